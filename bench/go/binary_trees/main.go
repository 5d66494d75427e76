// binary_trees — the Go peer of bench/binary_trees.c (the Benchmarks Game's binary-trees,
// one goroutine, the same output and summary line).
//
// Usage: binary_trees [max depth (18)]
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"syscall"
	"time"
)

type node struct{ left, right *node }

func make_(depth int) *node {
	n := &node{}
	if depth > 0 {
		n.left = make_(depth - 1)
		n.right = make_(depth - 1)
	}
	return n
}

func check(n *node) int64 {
	if n.left == nil {
		return 1
	}
	return 1 + check(n.left) + check(n.right)
}

func main() {
	max := 18
	if len(os.Args) > 1 {
		if v, err := strconv.Atoi(os.Args[1]); err == nil {
			max = v
		}
	}
	t0 := time.Now()
	fmt.Printf("stretch tree of depth %d\t check: %d\n", max+1, check(make_(max+1)))
	longLived := make_(max)
	for d := 4; d <= max; d += 2 {
		iterations := int64(1) << (max - d + 4)
		var sum int64
		for i := int64(0); i < iterations; i++ {
			sum += check(make_(d))
		}
		fmt.Printf("%d\t trees of depth %d\t check: %d\n", iterations, d, sum)
	}
	fmt.Printf("long lived tree of depth %d\t check: %d\n", max, check(longLived))
	wall := time.Since(t0).Seconds()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := []metrics.Sample{{Name: "/gc/pauses:seconds"}}
	metrics.Read(s)
	h := s[0].Value.Float64Histogram()
	var total, seen uint64
	for _, c := range h.Counts {
		total += c
	}
	p50, pmax := 0.0, 0.0
	for i, c := range h.Counts {
		if c == 0 {
			continue
		}
		if seen < (total+1)/2 && seen+c >= (total+1)/2 {
			p50 = h.Buckets[i+1]
		}
		seen += c
		pmax = h.Buckets[i+1]
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	fmt.Printf("go %s: depth %d, %.2f s, %d cycles, pauses p50 %.3f ms, max %.3f ms, peak RSS %.0f MiB\n",
		runtime.Version(), max, wall, ms.NumGC, p50*1e3, pmax*1e3, float64(ru.Maxrss)/1024)
}
