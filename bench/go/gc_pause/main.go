// gc_pause — the Go peer of bench/gc_pause.c: the same balanced tree of 32-byte nodes as
// the live heap, the same mutators replacing random subtrees of 127 nodes, the same report.
// Pauses are Go's own stop-the-world pauses (runtime/metrics /gc/pauses:seconds histogram,
// p50/p99 from the buckets, max = the top non-empty bucket's upper bound).
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
	"syscall"
	"time"
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

func arg(i int, def float64) float64 {
	if len(os.Args) > i {
		if v, err := strconv.ParseFloat(os.Args[i], 64); err == nil {
			return v
		}
	}
	return def
}

func pauses() (p50, p99, max float64) {
	s := []metrics.Sample{{Name: "/gc/pauses:seconds"}}
	metrics.Read(s)
	h := s[0].Value.Float64Histogram()
	var total uint64
	for _, c := range h.Counts {
		total += c
	}
	var seen uint64
	for i, c := range h.Counts {
		if c == 0 {
			continue
		}
		upper := h.Buckets[i+1]
		if seen < (total+1)/2 && seen+c >= (total+1)/2 {
			p50 = upper
		}
		if seen < (total*99+99)/100 && seen+c >= (total*99+99)/100 {
			p99 = upper
		}
		seen += c
		max = upper
	}
	return p50 * 1e3, p99 * 1e3, max * 1e3
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
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
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
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	p50, p99, max := pauses()
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	fmt.Printf("go %s: live %.0f MiB (tree depth %d, built in %.2f s), %d mutators for %.1f s: %d cycles, "+
		"pauses p50 %.3f ms, p99 %.3f ms, max %.3f ms; %.0f replacements/s; peak RSS %.0f MiB\n",
		runtime.Version(), float64(ms0.HeapAlloc)/(1<<20), depth, t1.Sub(t0).Seconds(), mutators,
		t2.Sub(t1).Seconds(), ms.NumGC-ms0.NumGC, p50, p99, max,
		float64(replaced)/t2.Sub(t1).Seconds(), float64(ru.Maxrss)/1024)
	_ = root
}
