# bars.gp — bars-<workload>.png: a workload's median time and peak RSS per system, two bar
# charts side by side. Expects:
#   workload  the workload's name; reads data/<workload>.bars, a line per system:
#             "name" time_s rss_mib
#   wtitle    the workload's title, above both charts
set output sprintf('bars-%s.png', workload)
set multiplot layout 1,2 title wtitle
set style data histograms
set style fill solid 0.8
set boxwidth 0.8
set xtics rotate by -30
unset key
unset xlabel   # the previous workload's curves left theirs
unset ylabel
bars = sprintf('data/%s.bars', workload)
set title 'time (s)'
plot bars using 2:xtic(1) lc rgb '#4472c4'
set title 'peak RSS (MiB)'
plot bars using 3:xtic(1) lc rgb '#ed7d31'
unset multiplot
# Back to what the curves of pauses.gp, heap.gp and latency.gp are drawn with.
set xtics norotate
set key outside right
set style data lines
