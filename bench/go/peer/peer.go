// Package peer is the report's side of the Go peers, as bench/gc_peer.h is for the C ones:
// Begin marks where the measured part starts (cycles and pauses count from there) and, with
// NH_BENCH_TIMELINE=path, samples the heap in use and the cycle count every 10 ms into
// path ("seconds MiB cycles" per line); End stops the sampler, writes the pauses with
// NH_BENCH_PAUSES=path (ms, one per line) and prints the RESULT line with the workload's
// own key=value pairs.
//
// Pauses are Go's own stop-the-world pauses from runtime/metrics' /gc/pauses:seconds
// histogram (each pause is its bucket's upper bound: Go keeps no exact list of them).
package peer

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/metrics"
	"sort"
	"time"
)

var (
	t0      time.Time
	cycles0 uint64
	hist0   *metrics.Float64Histogram
	stop    chan struct{}
	done    chan struct{}
)

func read(names ...string) []metrics.Sample {
	s := make([]metrics.Sample, len(names))
	for i, n := range names {
		s[i].Name = n
	}
	metrics.Read(s)
	return s
}

func cycles() uint64 { return read("/gc/cycles/total:gc-cycles")[0].Value.Uint64() }

func pauseHistogram() *metrics.Float64Histogram {
	return read("/gc/pauses:seconds")[0].Value.Float64Histogram()
}

// Begin starts the measured part.
func Begin() {
	t0 = time.Now()
	cycles0 = cycles()
	hist0 = pauseHistogram()
	path := os.Getenv("NH_BENCH_TIMELINE")
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		return
	}
	stop, done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		defer f.Close()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			s := read("/memory/classes/heap/objects:bytes", "/gc/cycles/total:gc-cycles")
			fmt.Fprintf(f, "%.3f %.2f %d\n", time.Since(t0).Seconds(), float64(s[0].Value.Uint64())/(1<<20),
				s[1].Value.Uint64())
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
}

// End finishes the measured part and prints the RESULT line, then format's pairs.
func End(format string, args ...interface{}) {
	if stop != nil {
		close(stop)
		<-done
	}
	h := pauseHistogram()
	var ms []float64
	for i, c := range h.Counts {
		if hist0 != nil && i < len(hist0.Counts) {
			c -= hist0.Counts[i]
		}
		upper := h.Buckets[i+1]
		if math.IsInf(upper, 1) {
			upper = h.Buckets[i]
		}
		for ; c > 0; c-- {
			ms = append(ms, upper*1e3)
		}
	}
	if path := os.Getenv("NH_BENCH_PAUSES"); path != "" {
		if f, err := os.Create(path); err == nil {
			for _, p := range ms {
				fmt.Fprintf(f, "%.4f\n", p)
			}
			f.Close()
		}
	}
	sort.Float64s(ms)
	var p50, p99, max float64
	if n := len(ms); n > 0 {
		p50, p99, max = ms[(n-1)/2], ms[(n*99+99)/100-1], ms[n-1]
	}
	fmt.Printf("RESULT system=go cycles=%d pause_p50_ms=%.4f pause_p99_ms=%.4f pause_max_ms=%.4f pauses=%d",
		cycles()-cycles0, p50, p99, max, len(ms))
	if format != "" {
		fmt.Printf(" "+format, args...)
	}
	fmt.Printf(" go_version=%s\n", runtime.Version())
}
