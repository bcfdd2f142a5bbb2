// Which lines of two outputs differ: a longest common subsequence of their lines, so that a
// line inserted on one side marks that line only, not every line after it.

const MAX_LINES = 2000;

// `before` and `after` are lists of lines; the answer marks, per line, whether it differs.
export function changedLines(a, b) {
  if (a.length > MAX_LINES || b.length > MAX_LINES) {
    // Too long for the quadratic table: compare line by line at the same position.
    return {
      before: a.map((line, i) => line !== b[i]),
      after: b.map((line, i) => line !== a[i]),
    };
  }
  const n = a.length;
  const m = b.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint16Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const keptA = new Array(n).fill(false);
  const keptB = new Array(m).fill(false);
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) { keptA[i++] = true; keptB[j++] = true; }
    else if (lcs[i + 1][j] >= lcs[i][j + 1]) i++;
    else j++;
  }
  return { before: keptA.map((kept) => !kept), after: keptB.map((kept) => !kept) };
}
