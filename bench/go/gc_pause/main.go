// gc_pause — the Go peer of bench/gc_pause.c: the same balanced tree of 32-byte nodes as
// the live heap, the same mutators replacing random subtrees of 127 nodes, the same count of
// the tree at the end (each node checked to hold its depth: the RESULT's check), the same
// RESULT line (bench/go/peer).
//
// Usage: gc_pause [live MiB (256)] [seconds (5)] [mutators (2)]
package main

import (
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"nheap/bench/peer"
)

type node struct {
	kid        [2]*node
	value, pad uint64
}

func tree(depth int) *node {
	n := &node{value: uint64(depth)}
	if depth > 0 {
		n.kid[0] = tree(depth - 1)
		n.kid[1] = tree(depth - 1)
	}
	return n
}

// count gives the tree's nodes, each checked to hold its depth: the RESULT's check
// (2^(depth+1) - 1).
func count(n *node, depth uint64) uint64 {
	if n == nil || n.value != depth {
		fmt.Fprintf(os.Stderr, "gc_pause: the live tree is damaged at depth %d\n", depth)
		os.Exit(1)
	}
	if depth == 0 {
		return 1
	}
	return 1 + count(n.kid[0], depth-1) + count(n.kid[1], depth-1)
}

func arg(i int, def float64) float64 {
	if len(os.Args) > i {
		if v, err := strconv.ParseFloat(os.Args[i], 64); err == nil {
			return v
		}
	}
	return def
}

func main() {
	liveMiB := arg(1, 256)
	seconds := arg(2, 5)
	mutators := int(arg(3, 2))
	depth := 1
	for float64(uint64(2)<<depth)*32 < liveMiB*(1<<20) {
		depth++
	}
	t0 := time.Now()
	root := tree(depth)
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	peer.Begin()
	t1 := time.Now()
	var stop int32
	var replaced int64
	var wg sync.WaitGroup
	for i := 0; i < mutators; i++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed))
			n := int64(0)
			for atomic.LoadInt32(&stop) == 0 {
				parent := root
				for d := depth; d > 7; d-- {
					parent = parent.kid[r.Intn(2)]
				}
				parent.kid[r.Intn(2)] = tree(6)
				n++
			}
			atomic.AddInt64(&replaced, n)
		}(int64(i + 1))
	}
	time.Sleep(time.Duration(seconds * float64(time.Second)))
	atomic.StoreInt32(&stop, 1)
	wg.Wait()
	t2 := time.Now()
	nodes := count(root, uint64(depth))
	peer.End(nodes, "live_mib=%.0f depth=%d mutators=%d build_s=%.3f run_s=%.3f replacements_per_s=%.0f",
		float64(s[0].Value.Uint64())/(1<<20), depth, mutators, t1.Sub(t0).Seconds(), t2.Sub(t1).Seconds(),
		float64(replaced)/t2.Sub(t1).Seconds())
	runtime.KeepAlive(root)
}
