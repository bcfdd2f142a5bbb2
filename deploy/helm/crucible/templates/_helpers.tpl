{{/* Names, labels, images, URLs and the environment pieces every component shares. */}}

{{- define "crucible.fullname" -}}
{{- if contains "crucible" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-crucible" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The name of one component's objects: (list $ "gateway"). */}}
{{- define "crucible.name" -}}
{{- printf "%s-%s" (include "crucible.fullname" (index . 0)) (index . 1) -}}
{{- end -}}

{{/* The labels that select one component's pods: (list $ "gateway"). */}}
{{- define "crucible.selector" -}}
app.kubernetes.io/name: crucible
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "crucible.labels" -}}
{{ include "crucible.selector" . }}
app.kubernetes.io/managed-by: {{ (index . 0).Release.Service }}
app.kubernetes.io/version: {{ (index . 0).Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" (index . 0).Chart.Name (index . 0).Chart.Version }}
{{- end -}}

{{/* An image of the chart: (list $ "gateway"). */}}
{{- define "crucible.image" -}}
{{- $root := index . 0 -}}
{{- $name := index $root.Values.image.names (index . 1) -}}
{{- $tag := index ($root.Values.image.tags | default dict) (index . 1) | default $root.Values.image.tag | default $root.Chart.AppVersion -}}
{{- if $root.Values.image.registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $root.Values.image.registry) $name $tag -}}
{{- else -}}
{{- printf "%s:%s" $name $tag -}}
{{- end -}}
{{- end -}}

{{- define "crucible.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "crucible.name" (list . "secrets")) -}}
{{- end -}}

{{- define "crucible.storageUrl" -}}
http://{{ include "crucible.name" (list . "storage") }}:{{ .Values.storage.port }}
{{- end -}}

{{- define "crucible.queueServiceUrl" -}}
http://{{ include "crucible.name" (list . "queue-service") }}:{{ .Values.queueService.port }}
{{- end -}}

{{- define "crucible.stateRedisUrl" -}}
{{- if .Values.redis.enabled -}}
redis://{{ include "crucible.name" (list . "redis-state") }}:6379/0
{{- else -}}
{{- required "redis.external.stateUrl is required when redis.enabled=false" .Values.redis.external.stateUrl -}}
{{- end -}}
{{- end -}}

{{- define "crucible.brokerRedisUrl" -}}
{{- if .Values.redis.enabled -}}
redis://{{ include "crucible.name" (list . "redis-broker") }}:6379/0
{{- else -}}
{{- required "redis.external.brokerUrl is required when redis.enabled=false" .Values.redis.external.brokerUrl -}}
{{- end -}}
{{- end -}}

{{/* How many executor pods a pool may have: its replicas, or KEDA's maximum when KEDA scales it
(only the celery pool is scaled). The consumers' URL list names every one of them. */}}
{{- define "crucible.executorCount" -}}
{{- $root := index . 0 -}}
{{- $pool := index . 1 -}}
{{- $replicas := int (index $root.Values.executors $pool).replicas -}}
{{- if and $root.Values.keda.enabled (eq $pool "celery") -}}
{{- max $replicas (int $root.Values.keda.executors.maxReplicas) -}}
{{- else -}}
{{- $replicas -}}
{{- end -}}
{{- end -}}

{{/* Comma-separated URLs of a pool's executors: one stable DNS name per StatefulSet pod,
through the pool's headless Service: (list $ "celery"). */}}
{{- define "crucible.executorUrls" -}}
{{- $root := index . 0 -}}
{{- $pool := index . 1 -}}
{{- $name := include "crucible.name" (list $root (printf "executor-%s" $pool)) -}}
{{- $urls := list -}}
{{- range $i := until (int (include "crucible.executorCount" .)) -}}
{{- $urls = append $urls (printf "http://%s-%d.%s.%s.svc:%d" $name $i $name $root.Release.Namespace (int $root.Values.executors.port)) -}}
{{- end -}}
{{- join "," $urls -}}
{{- end -}}

{{/* Environment every service reads (crucible_contracts.settings.ServiceSettings). */}}
{{- define "crucible.commonEnv" -}}
- name: ENVIRONMENT
  value: {{ .Values.environment | quote }}
- name: LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: INTERNAL_API_KEY
  valueFrom:
    secretKeyRef: {name: {{ include "crucible.secretName" . }}, key: INTERNAL_API_KEY}
{{- end -}}

{{/* A component's own extra environment (a map of name -> value). */}}
{{- define "crucible.extraEnv" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end -}}
{{- end -}}

{{/* The security context of every container but the executors' and the in-chart databases'. */}}
{{- define "crucible.restrictedContainer" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{/* Pod-level settings every pod shares. */}}
{{- define "crucible.podCommon" -}}
serviceAccountName: {{ include "crucible.fullname" . }}
automountServiceAccountToken: false
{{- with .Values.image.pullSecrets }}
imagePullSecrets: {{ toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The checksum of the rendered Secret, so pods restart when a secret changes. */}}
{{- define "crucible.secretChecksum" -}}
checksum/secrets: {{ include (print .Template.BasePath "/secrets.yaml") . | sha256sum }}
{{- end -}}

{{/* Probes on a service's GET /health (every service's /health is open, no internal key). */}}
{{- define "crucible.httpProbes" -}}
readinessProbe:
  httpGet: {path: /health, port: http}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 3
livenessProbe:
  httpGet: {path: {{ . | default "/health" }}, port: http}
  initialDelaySeconds: 10
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
{{- end -}}

{{/* Writable scratch for a read-only root file system. */}}
{{- define "crucible.tmpMount" -}}
- {name: tmp, mountPath: /tmp}
{{- end -}}
{{- define "crucible.tmpVolume" -}}
- {name: tmp, emptyDir: {sizeLimit: 256Mi}}
{{- end -}}

{{/* DATABASE_URL for storage: the in-chart PostgreSQL (password from its Secret, put into the
URL by Kubernetes' $(VAR) expansion) or the external URL's Secret. */}}
{{- define "crucible.databaseEnv" -}}
{{- if .Values.postgresql.enabled -}}
- name: POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.postgresql.existingSecret | default (include "crucible.name" (list . "database")) }}
      key: POSTGRES_PASSWORD
- name: DATABASE_URL
  value: {{ printf "postgresql+psycopg://%s:$(POSTGRES_PASSWORD)@%s:5432/%s" .Values.postgresql.user (include "crucible.name" (list . "postgresql")) .Values.postgresql.database | quote }}
{{- else -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.externalDatabase.existingSecret | default (include "crucible.name" (list . "database")) }}
      key: {{ .Values.externalDatabase.existingSecretKey }}
{{- end -}}
{{- end -}}

{{/* Environment of the Celery app's processes (crucible_worker.config): beat and Flower only
talk to the broker; the worker also to storage and its executors. */}}
{{- define "crucible.brokerEnv" -}}
{{ include "crucible.commonEnv" . }}
- {name: CELERY_BROKER_URL, value: {{ include "crucible.brokerRedisUrl" . | quote }}}
{{- end -}}
{{- define "crucible.celeryEnv" -}}
{{ include "crucible.brokerEnv" . }}
- {name: STORAGE_SERVICE_URL, value: {{ include "crucible.storageUrl" . | quote }}}
- {name: EXECUTOR_SERVICE_URL, value: {{ include "crucible.executorUrls" (list . "celery") | quote }}}
- {name: CELERY_CONCURRENCY, value: {{ .Values.celeryWorker.concurrency | quote }}}
{{- include "crucible.extraEnv" .Values.celeryWorker.env }}
{{- end -}}

{{/* The annotations Prometheus' usual Kubernetes scrape configuration follows: (list $ port). */}}
{{- define "crucible.scrapeAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ index . 1 | quote }}
prometheus.io/path: /metrics
{{- end -}}
