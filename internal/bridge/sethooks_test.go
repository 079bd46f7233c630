package bridge

import (
	"net/http/httptest"
	"testing"

	"github.com/rs/zerolog"

	"github.com/toolbus-dev/toolbus/internal/natstest"
)

// TestSetHooks: a reload adds a hook, removes one (404 after), changes a
// secret, and a bad set is refused whole, the running one kept.
func TestSetHooks(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	b, err := New(srv.JS, []Hook{{Name: "a", Auth: AuthBearer, Token: "t0ken"}, {Name: "gone", Auth: AuthNone}},
		zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(b)
	t.Cleanup(hs.Close)
	body := []byte(`{}`)
	if r := post(t, hs.URL+"/hooks/gone", body, nil); r.status != 202 {
		t.Fatalf("before: gone answered %d %+v", r.status, r.err)
	}

	if err := b.SetHooks([]Hook{{Name: "a", Auth: AuthBearer, Token: "n3w"}, {Name: "new", Auth: AuthNone}}); err != nil {
		t.Fatal(err)
	}
	if r := post(t, hs.URL+"/hooks/gone", body, nil); r.status != 404 || r.err.Code != CodeNotFound {
		t.Fatalf("removed hook answered %d %+v", r.status, r.err)
	}
	if r := post(t, hs.URL+"/hooks/new", body, nil); r.status != 202 {
		t.Fatalf("added hook answered %d %+v", r.status, r.err)
	}
	if r := post(t, hs.URL+"/hooks/a", body, bearer(nil)); r.status != 401 {
		t.Fatalf("old token after the change: %d", r.status)
	}
	if r := post(t, hs.URL+"/hooks/a", body, map[string]string{"Authorization": "Bearer n3w"}); r.status != 202 {
		t.Fatalf("new token: %d %+v", r.status, r.err)
	}

	// Two hooks of one name: refused, nothing changes.
	if err := b.SetHooks([]Hook{{Name: "x", Auth: AuthNone}, {Name: "x", Auth: AuthNone}}); err == nil {
		t.Fatal("duplicate names accepted")
	}
	if r := post(t, hs.URL+"/hooks/new", body, nil); r.status != 202 {
		t.Fatalf("after a refused set: %d %+v", r.status, r.err)
	}
	if r := post(t, hs.URL+"/hooks/x", body, nil); r.status != 404 {
		t.Fatalf("refused set half applied: %d", r.status)
	}
}
