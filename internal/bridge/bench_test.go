package bridge

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/internal/natstest"
	"github.com/toolbus-dev/toolbus/subjects"
)

// benchConcurrency is the number of concurrent senders in the ingest benchmark.
const benchConcurrency = 32

// benchBody is a typical Zapier-style webhook body (~400 bytes).
var benchBody = []byte(`{"id":"evt_1PZx","type":"order.created","created":1767225600,"data":{"order":{"id":"ord_8812","customer":{"name":"Ada Lovelace","email":"ada@example.com"},"total":"129.90","currency":"EUR","items":[{"sku":"TB-1","qty":2,"price":"39.95"},{"sku":"TB-9","qty":1,"price":"50.00"}],"shipping":{"city":"London","country":"GB"}}},"source":"zapier"}`)

type ingestResult struct {
	mode     string
	n        int
	elapsed  time.Duration
	p50, p99 time.Duration
}

func (r ingestResult) rate() float64 { return float64(r.n) / r.elapsed.Seconds() }

// ingest sends n requests with benchConcurrency workers through send and
// measures each one.
func ingest(tb testing.TB, mode string, n int, send func(i int) error) ingestResult {
	tb.Helper()
	var next atomic.Int64
	lat := make([][]time.Duration, benchConcurrency)
	var wg sync.WaitGroup
	var failed atomic.Value
	start := time.Now()
	for w := range benchConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				if err := send(i); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, _ := failed.Load().(error); err != nil {
		tb.Fatalf("%s: %v", mode, err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	return ingestResult{mode: mode, n: n, elapsed: elapsed, p50: all[len(all)/2], p99: all[len(all)*99/100]}
}

// ingestSetup starts NATS and the bridge (one hook without auth, one with
// HMAC) and returns the three senders measured side by side.
func ingestSetup(tb testing.TB) map[string]func(i int) error {
	srv := natstest.Start(tb)
	nc, err := nats.Connect(srv.URL, nats.ReconnectBufSize(-1))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := New(js, []Hook{{Name: "open", Auth: AuthNone}, {Name: "signed", Auth: AuthHMAC, Secret: string(secret)}}, zerolog.Nop())
	if err != nil {
		tb.Fatal(err)
	}
	hs := httptest.NewServer(b)
	tb.Cleanup(hs.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 2 * benchConcurrency, MaxIdleConnsPerHost: 2 * benchConcurrency}}
	tb.Cleanup(client.CloseIdleConnections)

	post := func(url string, body []byte, hdr map[string]string) error {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	subj, _ := subjects.Webhook("raw")
	return map[string]func(int) error{
		// The same body published straight to JetStream, with a random
		// Nats-Msg-Id as the bridge sets, waiting for each PubAck.
		"raw JetStream publish": func(int) error {
			msg := nats.NewMsg(subj)
			msg.Header.Set(subjects.HeaderCallID, randomID())
			msg.Data = benchBody
			_, err := js.PublishMsg(context.Background(), msg)
			return err
		},
		"bridge, auth none": func(int) error { return post(hs.URL+"/hooks/open", benchBody, nil) },
		// Each request a distinct event of the same size: the signature
		// names the event, so one body signed twice in a second is one.
		"bridge, auth hmac": func(i int) error {
			body := bytes.Replace(benchBody, []byte(`"evt_1PZx"`), fmt.Appendf(nil, `"%08x"`, uint32(i)), 1)
			ts := time.Now().Unix()
			return post(hs.URL+"/hooks/signed", body, map[string]string{
				DefaultTimestampHeader: strconv.FormatInt(ts, 10),
				DefaultSignatureHeader: Sign(secret, ts, body),
			})
		},
	}
}

var benchModes = []string{"raw JetStream publish", "bridge, auth none", "bridge, auth hmac"}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// BenchmarkIngest measures webhook ingest at concurrency 32 — requests per
// second and p99 — side by side with raw JetStream publishes of the same
// body, in one run:
//
//	go test -run '^$' -bench Ingest -benchtime 20000x ./bridge/
func BenchmarkIngest(b *testing.B) {
	senders := ingestSetup(b)
	for _, mode := range benchModes {
		b.Run(mode, func(b *testing.B) {
			r := ingest(b, mode, b.N, senders[mode])
			b.ReportMetric(r.rate(), "req/s")
			b.ReportMetric(float64(r.p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(r.p99.Microseconds())/1000, "p99-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// TestIngestTable prints the same comparison as a table. It runs only with
// TOOLBUS_BENCH=1 (TOOLBUS_BENCH_N sets the requests per mode, default
// 20000):
//
//	TOOLBUS_BENCH=1 go test -run IngestTable -v ./bridge/
func TestIngestTable(t *testing.T) {
	if os.Getenv("TOOLBUS_BENCH") == "" {
		t.Skip("set TOOLBUS_BENCH=1 to run the ingest benchmark")
	}
	n := 20000
	if v, err := strconv.Atoi(os.Getenv("TOOLBUS_BENCH_N")); err == nil && v > 0 {
		n = v
	}
	senders := ingestSetup(t)
	// Warm up connections and the server.
	for _, mode := range benchModes {
		ingest(t, mode, 2000, senders[mode])
	}
	var rows []ingestResult
	for _, mode := range benchModes {
		rows = append(rows, ingest(t, mode, n, senders[mode]))
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "\nwebhook ingest, concurrency %d, %d-byte body, %d requests per mode\n", benchConcurrency, len(benchBody), n)
	fmt.Fprintf(&out, "%-26s %10s %9s %9s %9s\n", "mode", "req/s", "p50 ms", "p99 ms", "vs raw")
	for _, r := range rows {
		fmt.Fprintf(&out, "%-26s %10.0f %9.2f %9.2f %8.2fx\n", r.mode, r.rate(),
			float64(r.p50.Microseconds())/1000, float64(r.p99.Microseconds())/1000, r.rate()/rows[0].rate())
	}
	t.Log(out.String())
}
