# heap.gp — heap-<workload>.png: a workload's heap in use over its measured part, a line per
# system, with a dot in the line's colour where one of its GC cycles ended. Expects:
#   workload  the workload's name
#   wtitle    its title
#   slugs     array, a system per entry: reads data/<workload>-<slug>.timeline, a line per
#             sample: seconds heap_mib cycles; and data/<workload>-<slug>.cycles, the samples
#             where the cycle count moved: seconds heap_mib
#   names     array, the systems' names in the key, in the order of slugs
#   marks     array, 1 where the system's .cycles has any sample (0: no dots for it)
set output sprintf('heap-%s.png', workload)
set title wtitle.': heap in use (dots: a GC cycle ended)'
set xlabel 'seconds into the measured part'
set ylabel 'MiB'
# A plot iteration repeats one clause, and each system has two, its line then its dots (so the
# next system's line is drawn over them): the plot command is built as a string.
series = ''
do for [i=1:|slugs|] {
  f = sprintf('data/%s-%s', workload, slugs[i])
  series = series.(i > 1 ? ', ' : '') \
    .sprintf("'%s.timeline' using 1:2 with lines lw 1.5 lc %d title names[%d]", f, i, i)
  if (marks[i]) {
    series = series.sprintf(", '%s.cycles' using 1:2 with points pt 7 ps 0.6 lc %d notitle", f, i)
  }
}
eval 'plot '.series
