package peer

import (
	"math"
	"testing"
)

func TestParsePrinted(t *testing.T) {
	for _, c := range []struct {
		s       string
		v, step float64
	}{{"0", 0, 0.001}, {"0.018", 0.018, 0.001}, {"0.12", 0.12, 0.01}, {"1.2", 1.2, 0.1}, {"12", 12, 1}, {"124", 124, 1}} {
		p, ok := parsePrinted(c.s)
		if !ok || p.v != c.v || math.Abs(p.step-c.step) > 1e-12 {
			t.Errorf("%q: %+v %v, want %v %v", c.s, p, ok, c.v, c.step)
		}
	}
	for _, s := range []string{"", "x", "-1"} {
		if _, ok := parsePrinted(s); ok {
			t.Errorf("%q parsed", s)
		}
	}
}

func TestParseTrace(t *testing.T) {
	n, c, ok := parseTrace("gc 5 @0.306s 8%: 0.026+58+0.005 ms clock, 0.053+0/28/69+0.010 ms cpu, " +
		"64->64->64 MB, 86 MB goal, 0 MB stacks, 0 MB globals, 2 P (forced)")
	if !ok || n != 5 || c.a.v != 0.026 || c.c.v != 0.005 || c.total != -1 {
		t.Fatalf("forced: %v %+v %v", n, c, ok)
	}
	if want := 0.053 + 0 + 28 + 69 + 0.010 + (0.001+0.001+1+1+0.001)/2; math.Abs(c.cpuMS-want) > 1e-9 {
		t.Errorf("cpu %v, want %v", c.cpuMS, want)
	}
	n, c, ok = parseTrace("gc 123 @12.345s 30%: 12+1.2+0.12 ms clock, 24+0.055/0.30/0+0.24 ms cpu, 4->4->2 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P")
	if !ok || n != 123 || c.a != (printed{12, 1}) || c.c.v != 0.12 {
		t.Fatalf("%v %+v %v", n, c, ok)
	}
	for _, l := range []string{"scvg: 0 MB released", "gc 1 @0.1s 1%: 0.1+0.2 ms clock, 1+1/1/1+1 ms cpu",
		"gc x @0.1s 1%: 0.1+0.2+0.3 ms clock, 1+1/1/1+1 ms cpu", "GC forced"} {
		if _, _, ok := parseTrace(l); ok {
			t.Errorf("%q parsed", l)
		}
	}
}

func TestPauses(t *testing.T) {
	near := func(got []float64, want ...float64) bool {
		if len(got) != len(want) {
			return false
		}
		for i := range got {
			if math.Abs(got[i]-want[i]) > 1e-9 {
				return false
			}
		}
		return true
	}
	// Unpinned: the middle of each printed step.
	c := &cycle{a: printed{0.23, 0.01}, c: printed{0.004, 0.001}, total: -1}
	if p := c.pauses(); !near(p, 0.235, 0.0045) {
		t.Errorf("unpinned %v", p)
	}
	// Pinned: 0.2342 + 0.0041 = 0.2383 ms; C's finer step fixes A within 1 µs, and they sum exactly.
	c.total = 238300
	p := c.pauses()
	if len(p) != 2 || math.Abs(p[0]-0.2342) > 0.0005 || math.Abs(p[0]+p[1]-0.2383) > 1e-9 {
		t.Errorf("pinned %v", p)
	}
	// More stopped than the two allow: a restarted mark termination's stop as a third pause.
	c.total = 300000
	if p := c.pauses(); !near(p, 0.235, 0.0045, 0.3-0.235-0.0045) {
		t.Errorf("restart %v", p)
	}
	// Less than they allow (never from the runtime): the printed middles.
	c.total = 100000
	if p := c.pauses(); !near(p, 0.235, 0.0045) {
		t.Errorf("short %v", p)
	}
}
