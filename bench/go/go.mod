module nheap/bench

go 1.19
