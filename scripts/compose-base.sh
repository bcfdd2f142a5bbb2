#!/usr/bin/env bash
# Builds the image every Crucible image starts from, without pulling anything: a debootstrap of
# Debian bookworm (minbase + python3) imported into the container engine. Built only when missing or
# when its recipe (this file's RECIPE lines) changed; the image carries the recipe's hash as a label.
#   scripts/compose-base.sh [ENGINE]     ENGINE: podman (default) or docker
set -euo pipefail
cd "$(dirname "$0")/.."

ENGINE="${1:-${COMPOSE_ENGINE:-podman}}"
BASE_IMAGE="${CRUCIBLE_BASE_IMAGE:-localhost/crucible-base:bookworm}"

# RECIPE: what goes into the image; changing any of these lines rebuilds it.
SUITE=bookworm # RECIPE
VARIANT=minbase # RECIPE
PACKAGES=python3 # RECIPE
# RECIPE: locales, documentation and apt's caches are removed after the install.

recipe_hash=$(grep -E '# RECIPE' "$0" | sha256sum | cut -c1-16)
current=$("$ENGINE" image inspect --format '{{ index .Config.Labels "org.crucible.base-recipe" }}' \
  "$BASE_IMAGE" 2>/dev/null || true)
if [ "$current" = "$recipe_hash" ]; then
  echo "compose-base: $BASE_IMAGE is up to date (recipe $recipe_hash)"
  exit 0
fi

# The Debian mirror apt already uses on this machine: the first source that serves SUITE/main.
mirror="${DEBIAN_MIRROR:-$(apt-cache policy 2>/dev/null |
  awk -v s="$SUITE/main" '$3 == s && $2 ~ /^https?:/ {print $2; exit}')}"
mirror="${mirror:-http://deb.debian.org/debian}"

[ "$(id -u)" = 0 ] || { echo "compose-base: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "compose-base: install debootstrap" >&2; exit 1; }

rootfs=$(mktemp -d /var/tmp/crucible-base.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "compose-base: debootstrap $SUITE ($VARIANT, +$PACKAGES) from $mirror"
nice debootstrap --variant="$VARIANT" --include="$PACKAGES" "$SUITE" "$rootfs" "$mirror" >/dev/null

# The image's apt sources point at the same mirror, so images built from it can install packages.
echo "deb $mirror $SUITE main" >"$rootfs/etc/apt/sources.list"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
  "$rootfs"/var/log/*.log "$rootfs"/var/cache/debconf/*-old
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
# Nothing below documentation is installed by later layers either.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/01-crucible-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
cat >"$rootfs/etc/apt/apt.conf.d/01-crucible-minimal" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOF

tar -C "$rootfs" -c . | "$ENGINE" import \
  --change "LABEL org.crucible.base-recipe=$recipe_hash" \
  --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change "ENV LANG=C.UTF-8" \
  --change 'CMD ["/bin/bash"]' \
  - "$BASE_IMAGE" >/dev/null
echo "compose-base: built $BASE_IMAGE (recipe $recipe_hash)"
