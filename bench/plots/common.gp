# common.gp — the settings every plot of nheap-report shares: 900x540 PNGs (pngcairo), a grid,
# the key outside on the right. Expects no variables. plots.gp (written by bench/report.c into
# the report's folder) loads it first, then a script per plot from the same plots/ folder.
# The scripts share one gnuplot session and run in order: what one sets, the next inherits.
set terminal pngcairo size 900,540 font ',10' noenhanced
set grid
set key outside right
