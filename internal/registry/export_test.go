package registry

import "slices"

// found lists the secrets secretFields visits, as field=value.
func found(srv Server) []string {
	var out []string
	_ = secretFields(&srv, func(s secret, v string) (string, error) {
		out = append(out, s.field+"="+v)
		return v, nil
	})
	slices.Sort(out)
	return out
}

// Found is found for the external tests.
var Found = found
