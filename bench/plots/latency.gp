# latency.gp — latency.png: the server's request latency by percentile, a curve per system
# (y logarithmic). Expects:
#   workload  the server workload's name (kvserver)
#   slugs     array, a system per entry: reads data/<workload>-<slug>.latency, a line per
#             percentile: label microseconds (the last label is the max, 100)
#   names     array, the systems' names in the key, in the order of slugs
set output 'latency.png'
set title workload.': request latency by percentile'
set logscale y
set xlabel 'percentile (100 = max)'
set ylabel 'microseconds'
plot for [i=1:|slugs|] sprintf('data/%s-%s.latency', workload, slugs[i]) \
  using 0:2:xtic(1) with linespoints lw 2 title names[i]
unset logscale y
