package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	gosync "sync"
	"time"

	"github.com/toolbus-dev/toolbus/subjects"
)

// sample is the serve side's state at one moment of a soak.
type sample struct {
	at                  time.Duration
	rss, heap           int64
	goroutines          int
	results, resultsB   uint64 // TOOL_RESULTS messages and bytes
	ledger, ledgerBytes uint64 // the ledger bucket's
}

func (st *serve) sample(ctx context.Context, start time.Time) sample {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, _ := memStatus()
	s := sample{at: time.Since(start), rss: rss, heap: int64(ms.HeapInuse), goroutines: runtime.NumGoroutine()}
	if str, err := st.js.Stream(ctx, subjects.StreamResults); err == nil {
		s.results, s.resultsB = str.CachedInfo().State.Msgs, str.CachedInfo().State.Bytes
	}
	if str, err := st.js.Stream(ctx, "KV_"+subjects.BucketLedger); err == nil {
		s.ledger, s.ledgerBytes = str.CachedInfo().State.Msgs, str.CachedInfo().State.Bytes
	}
	return s
}

// soak runs the bus path at o.SoakConcurrency on echo_plain (a stored
// result and a ledger mark per call) for o.Soak, sampling the serve side.
func soak(ctx context.Context, o Options, st *serve, lg *child, w io.Writer) error {
	start := time.Now()
	var (
		mu      gosync.Mutex
		samples []sample
		stop    = make(chan struct{})
		done    = make(chan struct{})
	)
	take := func() {
		s := st.sample(ctx, start)
		mu.Lock()
		samples = append(samples, s)
		mu.Unlock()
		fmt.Fprintf(o.Progress, "%6.0fs RSS %6.1f MiB heap %6.1f MiB results %8d (%6.1f MiB) ledger %8d (%6.1f MiB)\n",
			s.at.Seconds(), mb(s.rss), mb(s.heap), s.results, mb(int64(s.resultsB)), s.ledger, mb(int64(s.ledgerBytes)))
	}
	take()
	go func() {
		defer close(done)
		t := time.NewTicker(o.SampleEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				take()
			case <-stop:
				return
			}
		}
	}()
	r, cpu, err := lg.do(job{Path: "bus", Tool: "echo_plain", Args: echoArgs(100), Conc: o.SoakConcurrency, Duration: o.Soak}, cpuTime, nil)
	close(stop)
	<-done
	if err != nil {
		return err
	}
	take()
	if err := heapProfile(o.HeapProfile); err != nil {
		return err
	}
	fmt.Fprintf(w, "Soak: %v at concurrency %d on echo_plain (100 B), %d calls (%.0f/s), %d errors%s; serve CPU %.3f ms/call.\n\n",
		o.Soak, o.SoakConcurrency, r.Calls, float64(r.Calls)/r.Elapsed.Seconds(), r.Errors, errSuffix(r.FirstErr), msPerCall(cpu, r.Calls))
	fmt.Fprintf(w, "| time | serve RSS | Go heap in use | goroutines | TOOL_RESULTS | ledger |\n|---|---|---|---|---|---|\n")
	for _, s := range samples {
		fmt.Fprintf(w, "| %.0fs | %.1f MiB | %.1f MiB | %d | %d (%.1f MiB) | %d (%.1f MiB) |\n", s.at.Seconds(), mb(s.rss), mb(s.heap), s.goroutines,
			s.results, mb(int64(s.resultsB)), s.ledger, mb(int64(s.ledgerBytes)))
	}
	// The slope is fitted over the second half, after the start-up growth.
	half := samples[len(samples)/2:]
	xs, rs, hs, ns := make([]float64, len(half)), make([]float64, len(half)), make([]float64, len(half)), make([]float64, len(half))
	for i, s := range half {
		xs[i], rs[i], hs[i], ns[i] = s.at.Minutes(), mb(s.rss), mb(s.heap), float64(s.results+s.ledger)
	}
	fmt.Fprintf(w, "\nSlope over the second half: RSS %+.2f MiB/min, Go heap %+.2f MiB/min", slope(xs, rs), slope(xs, hs))
	// Per retained message only where retention grew (not once capped).
	if perMsg := slope(ns, rs); !math.IsNaN(perMsg) && ns[len(ns)-1] > 1.5*ns[0] {
		fmt.Fprintf(w, "; RSS %+.0f bytes per retained message (results and ledger marks)", perMsg*(1<<20))
	}
	fmt.Fprintln(w, ".")
	return nil
}

// inflight publishes o.Inflight calls of sleep at once and waits for all.
func inflight(ctx context.Context, o Options, st *serve, lg *child, w io.Writer) error {
	runtime.GC()
	rss0, _ := memStatus()
	var (
		peakG, peakCalls    int
		peakHeap, peakStack uint64
		mu                  gosync.Mutex
		stop                = make(chan struct{})
		done                = make(chan struct{})
		profErr             = make(chan error, 1)
	)
	go func() {
		defer close(done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				calls := 0
				for _, n := range st.wk.Stats().InFlight {
					calls += n
				}
				mu.Lock()
				peakCalls = max(peakCalls, calls)
				peakG = max(peakG, runtime.NumGoroutine())
				peakHeap, peakStack = max(peakHeap, ms.HeapInuse), max(peakStack, ms.StackInuse)
				mu.Unlock()
			case <-stop:
				return
			}
		}
	}()
	args := fmt.Sprintf(`{"ms":%d,"steps":1}`, o.SleepFor.Milliseconds())
	cpu0 := cpuTime()
	r, _, err := lg.do(job{Path: "bus", Tool: o.InflightTool, Args: args, Burst: o.Inflight}, cpuTime, func() {
		// Every call is accepted; most run now. Profile half a sleep later.
		go func() {
			time.Sleep(o.SleepFor / 2)
			profErr <- heapProfile(o.HeapProfile)
		}()
	})
	cpu := cpuTime() - cpu0
	close(stop)
	<-done
	if err != nil {
		return err
	}
	select {
	case err := <-profErr:
		if err != nil {
			return err
		}
	default:
	}
	_, peak := memStatus()
	perCall := "–"
	if peakCalls > 0 {
		perCall = fmt.Sprintf("%.0f KiB", float64(peak-rss0)/float64(peakCalls)/1024)
	}
	fmt.Fprintf(w, "| calls | tool | sleep | completed | errors | time to complete | p50 / p99 completion | serve peak RSS | RSS before | peak calls in flight | RSS per call in flight | peak goroutines | peak Go heap / stacks | serve CPU |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(w, "| %d | %s | %v | %d | %d%s | %.2f s | %.2f s / %.2f s | %.0f MiB | %.0f MiB | %d | %s | %d | %.0f MiB / %.0f MiB | %.2f s |\n",
		o.Inflight, o.InflightTool, o.SleepFor, r.Calls, r.Errors, errSuffix(r.FirstErr), r.Elapsed.Seconds(), r.P50.Seconds(), r.P99.Seconds(), mb(peak), mb(rss0), peakCalls, perCall, peakG, mb(int64(peakHeap)), mb(int64(peakStack)), cpu.Seconds())
	return nil
}

func heapProfile(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		return err
	}
	// Beside it, where the goroutines (and so the stacks) are.
	g, err := os.Create(path + ".goroutines.txt")
	if err != nil {
		return err
	}
	defer g.Close()
	return pprof.Lookup("goroutine").WriteTo(g, 1)
}

func errSuffix(s string) string {
	if s == "" {
		return ""
	}
	return " (first: " + truncate(s, 120) + ")"
}

func msPerCall(cpu time.Duration, calls int) float64 {
	if calls == 0 {
		return 0
	}
	return float64(cpu) / float64(calls) / 1e6
}

// slope is the least-squares slope of ys over xs.
func slope(xs, ys []float64) float64 {
	n := float64(len(xs))
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return math.NaN()
	}
	return (n*sxy - sx*sy) / d
}

// inflightBins runs the burst against each --serve-bin as `BIN serve`, a
// fresh process per burst (its VmHWM is the burst's peak), the binaries
// taking turns for o.Rounds rounds: the before and after of a change in one
// run. A serve process reports neither its goroutines nor its heap, so
// those columns are the in-process table's alone.
func inflightBins(ctx context.Context, o Options, mcpURL string, w io.Writer) error {
	fmt.Fprintf(w, "\n| serve | tool | round | completed | errors | time to complete | p50 / p99 completion | serve peak RSS | RSS before | RSS per call | serve CPU |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	args := fmt.Sprintf(`{"ms":%d,"steps":1}`, o.SleepFor.Milliseconds())
	for round := 1; round <= o.Rounds; round++ {
		for i, bin := range o.ServeBins {
			if err := func() error {
				sp, lg, err := startServeAgent(ctx, o, bin, mcpURL, fmt.Sprintf("burst%d", i))
				if err != nil {
					return err
				}
				defer sp.close()
				defer lg.close()
				cpu := func() time.Duration { return cpuTimeOf(sp.pid) }
				// Once the serve side answers (its catalog is synced), settle.
				if _, _, err := lg.do(job{Path: "bus", Tool: "echo_plain", Args: echoArgs(100), Probe: true}, cpu, nil); err != nil {
					return err
				}
				time.Sleep(time.Second)
				rss0, _ := memStatusOf(sp.pid)
				cpu0 := cpu()
				r, _, err := lg.do(job{Path: "bus", Tool: o.InflightTool, Args: args, Burst: o.Inflight}, cpu, nil)
				if err != nil {
					return err
				}
				_, peak := memStatusOf(sp.pid)
				fmt.Fprintf(w, "| %s | %s | %d | %d | %d%s | %.2f s | %.2f s / %.2f s | %.0f MiB | %.0f MiB | %.0f KiB | %.2f s |\n",
					serveLabel(o.ServeBins, i), o.InflightTool, round, r.Calls, r.Errors, errSuffix(r.FirstErr), r.Elapsed.Seconds(), r.P50.Seconds(), r.P99.Seconds(),
					mb(peak), mb(rss0), float64(peak-rss0)/float64(o.Inflight)/1024, (cpu() - cpu0).Seconds())
				return nil
			}(); err != nil {
				return fmt.Errorf("%s: %w", bin, err)
			}
		}
	}
	return nil
}
