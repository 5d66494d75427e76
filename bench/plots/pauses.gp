# pauses.gp — pauses-<workload>.png: the distribution of a workload's stop-the-world pauses, a
# step curve per system: the fraction of its pauses at most x ms long (x logarithmic). Expects:
#   workload  the workload's name
#   wtitle    its title
#   slugs     array, a system per entry: reads data/<workload>-<slug>.cdf, a line per pause:
#             pause_ms fraction (sorted; report.c writes it from the system's pauses)
#   names     array, the systems' names in the key, in the order of slugs
set output sprintf('pauses-%s.png', workload)
set title wtitle.': stop-the-world pauses'
set logscale x
set xlabel 'pause (ms)'
set ylabel 'fraction of pauses <= x'
plot for [i=1:|slugs|] sprintf('data/%s-%s.cdf', workload, slugs[i]) \
  using 1:2 with steps lw 2 title names[i]
unset logscale x
