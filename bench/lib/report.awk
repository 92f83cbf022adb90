# bench/run.sh: the results table (Markdown) from the per-repetition figures.
#
#   awk -F'\t' -v proxies=direct,squid,sluice -f report.awk spec.tsv results.tsv notes.tsv
#
# spec.tsv:    row, title, metric, label, direct (yes/no: direct has this figure), target
#              ("le:N" = sluice median at most N; "dir:F" = sluice/direct at least F; "-")
# results.tsv: row, proxy, rep, metric, value
# notes.tsv:   row, proxy, text
# Each cell is the median of the repetitions with (min–max); ratios are of medians.

function fmt(x,   a) {
  a = x < 0 ? -x : x
  if (a >= 1000) return sprintf("%.0f", x)
  if (a >= 100) return sprintf("%.0f", x)
  if (a >= 10) return sprintf("%.1f", x)
  if (a >= 1) return sprintf("%.2f", x)
  return sprintf("%.3f", x)
}

# median of the values of key k (sets MIN, MAX, N); "" when there are none
function stats(k,   n, i, j, t, arr) {
  n = cnt[k]
  N = n
  if (n == 0) return ""
  for (i = 1; i <= n; i++) arr[i] = val[k, i]
  for (i = 2; i <= n; i++) { t = arr[i]; for (j = i - 1; j >= 1 && arr[j] > t; j--) arr[j + 1] = arr[j]; arr[j + 1] = t }
  MIN = arr[1]; MAX = arr[n]
  return (n % 2) ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
}

function cell(row, p, metric,   m) {
  m = stats(row SUBSEP p SUBSEP metric)
  if (m == "") return ""
  if (N == 1 || MIN == MAX) return fmt(m)
  return fmt(m) " (" fmt(MIN) "–" fmt(MAX) ")"
}

function ratio(a, b) { return (a == "" || b == "" || b + 0 == 0) ? "" : sprintf("%.2f", a / b) }

BEGIN {
  FS = "\t"
  np = split(proxies, P, ",")
  name["direct"] = "direct"; name["squid"] = "Squid"; name["sluice"] = "sluice"; name["g3proxy"] = "g3proxy"
}

FILENAME == ARGV[1] { ns++; S_row[ns] = $1; S_title[ns] = $2; S_metric[ns] = $3; S_label[ns] = $4; S_direct[ns] = $5; S_target[ns] = $6; next }
FILENAME == ARGV[2] {
  k = $1 SUBSEP $2 SUBSEP $4
  if ($4 == "errors") { errs[$1 SUBSEP $2] += $5; next }
  if ($5 == "") next
  val[k, ++cnt[k]] = $5 + 0; next
}
FILENAME == ARGV[3] { nn++; notes[nn] = "- " $1 ", " (($2 in name) ? name[$2] : $2) ": " $3; next }

END {
  hdr = "| row | figure |"; sep = "|---|---|"
  for (i = 1; i <= np; i++) { hdr = hdr " " name[P[i]] " |"; sep = sep "---:|" }
  has_squid = (proxies ~ /squid/); has_direct = (proxies ~ /direct/)
  if (has_squid) { hdr = hdr " sluice/Squid |"; sep = sep "---:|" }
  if (has_direct) { hdr = hdr " sluice/direct |"; sep = sep "---:|" }
  hdr = hdr " issue target for sluice |"; sep = sep "---|"
  print hdr; print sep
  prev = ""
  for (s = 1; s <= ns; s++) {
    row = S_row[s]; metric = S_metric[s]
    line = "| " (row != prev ? "**" row "**: " S_title[s] : "") " | " S_label[s] " |"
    prev = row
    for (i = 1; i <= np; i++) {
      p = P[i]
      if (p == "direct" && S_direct[s] != "yes") { line = line " — |"; continue }
      c = cell(row, p, metric)
      if (c == "") c = "n/a"
      if ((row SUBSEP p) in errs && errs[row SUBSEP p] > 0 && metric == S_metric[s] && (s == 1 || S_row[s - 1] != row))
        c = c " ⚠" errs[row SUBSEP p] " err"
      line = line " " c " |"
    }
    ms = stats(row SUBSEP "sluice" SUBSEP metric)
    if (has_squid) line = line " " ratio(ms, stats(row SUBSEP "squid" SUBSEP metric)) " |"
    md = stats(row SUBSEP "direct" SUBSEP metric)
    if (has_direct) line = line " " (S_direct[s] == "yes" ? ratio(ms, md) : "—") " |"
    t = S_target[s]; tt = ""
    if (t ~ /^le:/) {
      lim = substr(t, 4) + 0
      tt = "≤ " lim (ms == "" ? "" : (ms <= lim ? ": met" : ": not met"))
    } else if (t ~ /^dir:/) {
      lim = substr(t, 5) + 0
      r = ratio(ms, md)
      tt = "≥ " lim * 100 " % of direct" (r == "" ? "" : (r + 0 >= lim ? ": met" : ": not met"))
    }
    line = line " " tt " |"
    print line
  }
  if (nn) {
    print ""
    print "Notes:"
    for (i = 1; i <= nn; i++) print notes[i]
  }
  first = 1
  for (k in errs) if (errs[k] > 0) {
    if (first) { print ""; print "loadgen counted errors (summed over the measured repetitions):"; first = 0 }
    split(k, kk, SUBSEP); print "- " kk[1] ", " name[kk[2]] ": " errs[k]
  }
}
