// kvserver — the Go peer of examples/kvserver (the server side): the same protocol, the same
// index (a fixed table of buckets with entry chains, a lock per 1024 buckets) and values of
// 64..2048 bytes, one goroutine per connection. Prints "PORT n", serves until QUIT, then
// checks the index and prints the RESULT line of bench/go/peer. Driven by
// `nheap-kvserver load ... -- go-kvserver`.
//
// Protocol (binary, little-endian): request = op (1 byte), key (u32), and for 'S' a length
// (u32) and the bytes. 'G': reply length (u32, 0xffffffff: missing) and the bytes. 'S': set,
// reply u32 0. 'B': the measured part begins (peer.Begin), reply u32 0. 'P': the key is
// milliseconds: hold every stripe lock that long (the world stopped, from the clients' side),
// reply u32 0. 'Q' (or anything else): stop serving. The RESULT's check: the entries of keys
// below the key count, each checked to hold a value of 64..2048 bytes all equal to byte(key)
// (a damaged one ends the server with exit 1).
//
// Usage: kvserver [keys (20000)]
package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"nheap/bench/peer"
)

const (
	minValue = 64
	maxValue = 2048
	stripe   = 1024
)

type entry struct {
	next *entry
	val  []byte
	key  uint32
}

var (
	table   []*entry
	stripes []sync.Mutex
)

func put(key uint32, v []byte) {
	b := key & uint32(len(table)-1)
	stripes[b/stripe].Lock()
	e := table[b]
	for e != nil && e.key != key {
		e = e.next
	}
	if e != nil {
		e.val = v
	} else {
		table[b] = &entry{next: table[b], val: v, key: key}
	}
	stripes[b/stripe].Unlock()
}

func get(key uint32, buf []byte) int {
	b := key & uint32(len(table)-1)
	n := -1
	stripes[b/stripe].Lock()
	for e := table[b]; e != nil; e = e.next {
		if e.key == key {
			n = copy(buf, e.val)
			break
		}
	}
	stripes[b/stripe].Unlock()
	return n
}

// holdAll holds every stripe lock for d.
func holdAll(d time.Duration) {
	for i := range stripes {
		stripes[i].Lock()
	}
	time.Sleep(d)
	for i := range stripes {
		stripes[i].Unlock()
	}
}

// check counts the entries of keys below keys, each checked, under the stripe locks.
func check(keys uint32) uint64 {
	var n uint64
	for s := range stripes {
		stripes[s].Lock()
		for b := s * stripe; b < (s+1)*stripe; b++ {
			for e := table[b]; e != nil; e = e.next {
				if e.key >= keys {
					continue
				}
				ok := len(e.val) >= minValue && len(e.val) <= maxValue
				for i := 0; ok && i < len(e.val); i++ {
					ok = e.val[i] == byte(e.key)
				}
				if !ok {
					fmt.Fprintf(os.Stderr, "kvserver: the value of key %d is damaged (%d bytes)\n", e.key, len(e.val))
					os.Exit(1)
				}
				n++
			}
		}
		stripes[s].Unlock()
	}
	return n
}

func serve(c net.Conn, quit func()) {
	defer c.Close()
	r := bufio.NewReader(c)
	var hdr [5]byte
	buf := make([]byte, 4+maxValue)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		key := binary.LittleEndian.Uint32(hdr[1:])
		switch hdr[0] {
		case 'G':
			n := get(key, buf[4:])
			if n < 0 {
				binary.LittleEndian.PutUint32(buf, 0xffffffff)
				n = 0
			} else {
				binary.LittleEndian.PutUint32(buf, uint32(n))
			}
			if _, err := c.Write(buf[:4+n]); err != nil {
				return
			}
		case 'S':
			var l [4]byte
			if _, err := io.ReadFull(r, l[:]); err != nil {
				return
			}
			n := binary.LittleEndian.Uint32(l[:])
			if n > maxValue {
				return
			}
			v := make([]byte, n)
			if _, err := io.ReadFull(r, v); err != nil {
				return
			}
			put(key, v)
			if _, err := c.Write([]byte{0, 0, 0, 0}); err != nil {
				return
			}
		case 'B', 'P':
			if hdr[0] == 'B' {
				peer.Begin()
			} else {
				holdAll(time.Duration(key) * time.Millisecond)
			}
			if _, err := c.Write([]byte{0, 0, 0, 0}); err != nil {
				return
			}
		default: // 'Q' or garbage: stop serving
			quit()
			return
		}
	}
}

func main() {
	keys := 20000
	if len(os.Args) > 1 {
		if v, err := strconv.Atoi(os.Args[1]); err == nil {
			keys = v
		}
	}
	n := 1024
	for n < keys {
		n *= 2
	}
	table = make([]*entry, n)
	stripes = make([]sync.Mutex, n/stripe)
	rng := rand.New(rand.NewSource(42))
	for k := 0; k < keys; k++ {
		v := make([]byte, minValue+rng.Intn(maxValue-minValue+1))
		for i := range v {
			v[i] = byte(k)
		}
		put(uint32(k), v)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvserver:", err)
		os.Exit(1)
	}
	fmt.Printf("PORT %d\n", ln.Addr().(*net.TCPAddr).Port) // the measured part begins at 'B'
	var once sync.Once
	quit := func() { once.Do(func() { ln.Close() }) }
	var wg sync.WaitGroup
	for {
		c, err := ln.Accept()
		if err != nil {
			break
		}
		c.(*net.TCPConn).SetNoDelay(true)
		wg.Add(1)
		go func() {
			defer wg.Done()
			serve(c, quit)
		}()
	}
	wg.Wait()
	peer.End(check(uint32(keys)), "keys=%d", keys)
}
