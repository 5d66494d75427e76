// binary_trees — the Go peer of bench/binary_trees.c (the Benchmarks Game's binary-trees:
// the same output; with several goroutines, each depth's trees are split among them) and the
// RESULT line of bench/go/peer, whose check is the sum of every check printed, as the C one's.
//
// Usage: binary_trees [max depth (18)] [threads (1)]
package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"nheap/bench/peer"
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

func arg(i, def int) int {
	if len(os.Args) > i {
		if v, err := strconv.Atoi(os.Args[i]); err == nil {
			return v
		}
	}
	return def
}

func main() {
	max, threads := arg(1, 18), arg(2, 1)
	peer.Begin()
	t0 := time.Now()
	total := check(make_(max + 1)) // every check, summed: the RESULT's check
	fmt.Printf("stretch tree of depth %d\t check: %d\n", max+1, total)
	longLived := make_(max)
	for d := 4; d <= max; d += 2 {
		iterations := int64(1) << (max - d + 4)
		sums := make([]int64, threads)
		var wg sync.WaitGroup
		for t := 0; t < threads; t++ {
			n := iterations / int64(threads)
			if int64(t) < iterations%int64(threads) {
				n++
			}
			wg.Add(1)
			go func(t int, n int64) {
				defer wg.Done()
				for i := int64(0); i < n; i++ {
					sums[t] += check(make_(d))
				}
			}(t, n)
		}
		wg.Wait()
		var sum int64
		for _, s := range sums {
			sum += s
		}
		fmt.Printf("%d\t trees of depth %d\t check: %d\n", iterations, d, sum)
		total += sum
	}
	last := check(longLived)
	fmt.Printf("long lived tree of depth %d\t check: %d\n", max, last)
	wall := time.Since(t0).Seconds()
	peer.End(uint64(total+last), "depth=%d threads=%d time_s=%.3f", max, threads, wall)
}
