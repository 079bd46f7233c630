package catalog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/toolbus-dev/toolbus/subjects"
)

// The rules below are those strict-mode LLM function calling (OpenAI's
// "strict": true, and the providers that copied it) puts on a tool's
// parameters: the root is an object; every object lists its properties,
// closes itself with additionalProperties false and requires every property
// (optional ones are expressed as nullable); every node has a type; $ref
// points into the schema's own $defs; anyOf is allowed below the root,
// oneOf/allOf/not are not.

// maxInlineDepth bounds $ref inlining; deeper (or recursive) refs stay refs.
const maxInlineDepth = 8

var knownTypes = map[string]bool{
	"object": true, "array": true, "string": true, "number": true,
	"integer": true, "boolean": true, "null": true,
}

// checker collects a verdict while walking a schema.
type checker struct {
	root    map[string]any
	health  subjects.ToolHealth
	reasons []string
}

func (c *checker) nonStrict(path, format string, a ...any) {
	if c.health == subjects.HealthStrict {
		c.health = subjects.HealthNonStrictOnly
	}
	c.reasons = append(c.reasons, path+": "+fmt.Sprintf(format, a...))
}

func (c *checker) invalid(path, format string, a ...any) {
	c.health = subjects.HealthInvalid
	c.reasons = append(c.reasons, path+": "+fmt.Sprintf(format, a...))
}

// ValidateSchema judges an input schema (decoded JSON) for LLM function
// calling and returns its health with one reason per rule it breaks. Paths
// in reasons are JSON pointers into the schema ("#/properties/city").
func ValidateSchema(schema any) (subjects.ToolHealth, []string) {
	c := &checker{health: subjects.HealthStrict}
	root, ok := schema.(map[string]any)
	if !ok {
		c.invalid("#", "the schema is %s, not a JSON object", describe(schema))
		return c.health, c.reasons
	}
	c.root = root
	if err := compileCheck(root); err != nil {
		c.invalid("#", "not a valid JSON Schema: %s", err)
	}
	switch {
	case root["type"] == "object":
	case root["type"] == nil && root["anyOf"] != nil:
		c.invalid("#", "the root is an anyOf; function calling needs an object at the root")
	case root["type"] == nil:
		c.invalid("#", "the root has no type; function calling needs \"type\": \"object\"")
	default:
		c.invalid("#", "the root has type %s; function calling needs \"type\": \"object\"", describeJSON(root["type"]))
	}
	c.node(root, "#", 0)
	if defs, ok := root["$defs"].(map[string]any); ok {
		for _, k := range sortedKeys(defs) {
			c.node(defs[k], "#/$defs/"+escPtr(k), 0)
		}
	}
	if defs, ok := root["definitions"].(map[string]any); ok {
		for _, k := range sortedKeys(defs) {
			c.node(defs[k], "#/definitions/"+escPtr(k), 0)
		}
	}
	return c.health, c.reasons
}

func (c *checker) node(v any, path string, anyOfDepth int) {
	n, ok := v.(map[string]any)
	if !ok {
		if b, isBool := v.(bool); isBool {
			if b {
				c.nonStrict(path, "the schema `true` accepts anything; strict mode needs a typed schema")
			} else {
				c.nonStrict(path, "the schema `false` accepts nothing")
			}
			return
		}
		c.invalid(path, "a schema must be an object, got %s", describe(v))
		return
	}
	if ref, ok := n["$ref"].(string); ok {
		if _, found := resolveRef(c.root, ref); !found {
			c.invalid(path, "$ref %q does not resolve to a definition in this schema", ref)
		}
		return
	}
	for _, kw := range []string{"oneOf", "allOf", "not"} {
		if _, has := n[kw]; has {
			c.nonStrict(path, "%s is not supported in strict mode", kw)
		}
	}
	if branches, has := n["anyOf"]; has {
		list, ok := branches.([]any)
		if !ok || len(list) == 0 {
			c.invalid(path, "anyOf must be a non-empty array")
		} else {
			if anyOfDepth > 0 {
				c.nonStrict(path, "anyOf nested directly in another anyOf; flatten it")
			}
			seen := map[string]bool{}
			for i, b := range list {
				key := canonical(b)
				if seen[key] {
					c.nonStrict(path, "anyOf branch %d repeats an earlier branch", i)
				}
				seen[key] = true
				c.node(b, fmt.Sprintf("%s/anyOf/%d", path, i), anyOfDepth+1)
			}
		}
		if _, typed := n["type"]; !typed {
			return
		}
	}
	types, ok := typeList(n["type"])
	if !ok {
		c.invalid(path, "type must be a string or an array of strings, got %s", describe(n["type"]))
		return
	}
	if len(types) == 0 {
		if _, has := n["enum"]; has {
			return
		}
		if _, has := n["const"]; has {
			return
		}
		c.nonStrict(path, "no type; strict mode needs every schema typed")
	}
	for _, t := range types {
		if !knownTypes[t] {
			c.invalid(path, "unknown type %q (want object, array, string, number, integer, boolean or null)", t)
		}
	}
	if slices.Contains(types, "object") || (len(types) == 0 && n["properties"] != nil) {
		c.object(n, path)
	}
	if slices.Contains(types, "array") {
		items, has := n["items"]
		if !has {
			c.nonStrict(path, "array without items; strict mode needs the item schema")
		} else {
			c.node(items, path+"/items", 0)
		}
	}
}

func (c *checker) object(n map[string]any, path string) {
	props, hasProps := n["properties"]
	pm, ok := props.(map[string]any)
	switch {
	case !hasProps:
		c.nonStrict(path, "object without properties; strict mode needs \"properties\" (use {} for none)")
	case !ok:
		c.invalid(path, "properties must be an object, got %s", describe(props))
	}
	switch ap := n["additionalProperties"].(type) {
	case nil:
		c.nonStrict(path, "additionalProperties is not set; strict mode needs it false")
	case bool:
		if ap {
			c.nonStrict(path, "additionalProperties is true; strict mode needs it false")
		}
	default:
		c.nonStrict(path, "additionalProperties is a schema (a map); strict mode needs it false")
	}
	req, err := stringList(n["required"])
	if err != nil {
		c.invalid(path, "required %s", err)
	}
	for _, r := range req {
		if _, in := pm[r]; !in && pm != nil {
			c.invalid(path, "required names %q, which is not in properties", r)
		}
	}
	for _, k := range sortedKeys(pm) {
		if !slices.Contains(req, k) {
			c.nonStrict(path, "property %q is optional; strict mode needs every property in required (make it nullable instead)", k)
		}
		c.node(pm[k], path+"/properties/"+escPtr(k), 0)
	}
}

// Normalize returns a copy of schema rewritten towards strict mode, with one
// line per change. It never changes what the schema means to a server by
// more than strict mode forces: optional properties become required but
// nullable. Objects get properties and additionalProperties false; local
// $refs are inlined (recursive ones stay, with their $defs); nested anyOf is
// flattened and deduplicated, a one-branch anyOf unwrapped; a missing type is
// inferred from the keywords present.
func Normalize(schema any) (any, []string) {
	root, ok := schema.(map[string]any)
	if !ok {
		return schema, nil
	}
	n := &normalizer{orig: root}
	out := deepCopy(root).(map[string]any)
	n.root = out
	if out["type"] == nil && out["anyOf"] == nil && out["$ref"] == nil {
		out["type"] = "object"
		n.fix("#", "added \"type\": \"object\" at the root")
	}
	res := n.node(out, "#", 0, nil).(map[string]any)
	// Normalize the definitions that are still referenced.
	for _, key := range []string{"$defs", "definitions"} {
		defs, ok := res[key].(map[string]any)
		if !ok {
			continue
		}
		if !n.keptRefs {
			delete(res, key)
			n.fix("#", "removed %s: every $ref was inlined", key)
			continue
		}
		for _, k := range sortedKeys(defs) {
			defs[k] = n.node(defs[k], "#/"+key+"/"+escPtr(k), 0, nil)
		}
	}
	return res, n.fixes
}

type normalizer struct {
	orig     map[string]any
	root     map[string]any
	fixes    []string
	keptRefs bool
}

func (n *normalizer) fix(path, format string, a ...any) {
	n.fixes = append(n.fixes, path+": "+fmt.Sprintf(format, a...))
}

func (n *normalizer) node(v any, path string, depth int, refStack []string) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	if ref, ok := m["$ref"].(string); ok {
		target, found := resolveRef(n.orig, ref)
		if !found {
			return m // left for the validator to report
		}
		if depth >= maxInlineDepth || slices.Contains(refStack, ref) {
			n.keptRefs = true
			return m
		}
		tm, ok := target.(map[string]any)
		if !ok {
			n.keptRefs = true
			return m
		}
		inl := deepCopy(tm).(map[string]any)
		for k, sv := range m { // siblings of $ref (description, ...) win
			if k != "$ref" {
				inl[k] = sv
			}
		}
		n.fix(path, "inlined $ref %q", ref)
		return n.node(inl, path, depth+1, append(refStack, ref))
	}
	if list, ok := m["anyOf"].([]any); ok {
		flat := make([]any, 0, len(list))
		seen := map[string]bool{}
		var walk func([]any)
		walk = func(bs []any) {
			for _, b := range bs {
				if bm, ok := b.(map[string]any); ok && len(bm) == 1 {
					if inner, ok := bm["anyOf"].([]any); ok {
						n.fix(path, "flattened a nested anyOf")
						walk(inner)
						continue
					}
				}
				key := canonical(b)
				if seen[key] {
					n.fix(path, "removed a duplicate anyOf branch")
					continue
				}
				seen[key] = true
				flat = append(flat, b)
			}
		}
		walk(list)
		for i := range flat {
			flat[i] = n.node(flat[i], fmt.Sprintf("%s/anyOf/%d", path, i), depth, refStack)
		}
		if len(flat) == 1 && m["type"] == nil {
			if only, ok := flat[0].(map[string]any); ok {
				delete(m, "anyOf")
				merged := maps.Clone(only)
				for k, sv := range m {
					if _, has := merged[k]; !has {
						merged[k] = sv
					}
				}
				n.fix(path, "unwrapped a one-branch anyOf")
				return merged
			}
		}
		m["anyOf"] = flat
		if m["type"] == nil {
			return m
		}
	}
	if m["type"] == nil {
		if t := inferType(m); t != nil {
			m["type"] = t
			n.fix(path, "added type %s, inferred from its keywords", describeJSON(t))
		}
	}
	types, _ := typeList(m["type"])
	if slices.Contains(types, "object") {
		n.object(m, path, depth, refStack)
	}
	if slices.Contains(types, "array") {
		if items, has := m["items"]; has {
			m["items"] = n.node(items, path+"/items", depth, refStack)
		}
	}
	return m
}

func (n *normalizer) object(m map[string]any, path string, depth int, refStack []string) {
	props, has := m["properties"].(map[string]any)
	if !has {
		if m["properties"] != nil {
			return // malformed; the validator says so
		}
		props = map[string]any{}
		m["properties"] = props
		n.fix(path, "added empty properties")
	}
	switch ap := m["additionalProperties"].(type) {
	case nil:
		m["additionalProperties"] = false
		n.fix(path, "set additionalProperties false")
	case bool:
		if ap {
			m["additionalProperties"] = false
			n.fix(path, "set additionalProperties false (was true)")
		}
	}
	req, _ := stringList(m["required"])
	kept := req[:0:0]
	for _, r := range req {
		if _, in := props[r]; in {
			kept = append(kept, r)
		} else {
			n.fix(path, "dropped %q from required: not in properties", r)
		}
	}
	for _, k := range sortedKeys(props) {
		props[k] = n.node(props[k], path+"/properties/"+escPtr(k), depth, refStack)
		if !slices.Contains(kept, k) {
			kept = append(kept, k)
			props[k] = nullable(props[k])
			n.fix(path, "made optional property %q required and nullable", k)
		}
	}
	ks := make([]any, len(kept))
	for i, k := range kept {
		ks[i] = k
	}
	m["required"] = ks
}

// nullable lets a property schema accept null as well.
func nullable(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	switch t := m["type"].(type) {
	case string:
		if t != "null" {
			m["type"] = []any{t, "null"}
		}
		if e, ok := m["enum"].([]any); ok && !slices.Contains(e, any(nil)) {
			m["enum"] = append(e, nil)
		}
		return m
	case []any:
		if !slices.Contains(t, any("null")) {
			m["type"] = append(t, "null")
		}
		return m
	}
	if list, ok := m["anyOf"].([]any); ok {
		for _, b := range list {
			if bm, ok := b.(map[string]any); ok && bm["type"] == "null" {
				return m
			}
		}
		m["anyOf"] = append(list, map[string]any{"type": "null"})
		return m
	}
	if _, ok := m["$ref"]; ok {
		return map[string]any{"anyOf": []any{m, map[string]any{"type": "null"}}}
	}
	return m
}

func inferType(m map[string]any) any {
	switch {
	case m["properties"] != nil || m["additionalProperties"] != nil || m["required"] != nil:
		return "object"
	case m["items"] != nil || m["minItems"] != nil || m["maxItems"] != nil:
		return "array"
	case m["minLength"] != nil || m["maxLength"] != nil || m["pattern"] != nil || m["format"] != nil:
		return "string"
	case m["minimum"] != nil || m["maximum"] != nil || m["multipleOf"] != nil:
		return "number"
	}
	var vals []any
	if e, ok := m["enum"].([]any); ok {
		vals = e
	} else if c, ok := m["const"]; ok {
		vals = []any{c}
	}
	var ts []any
	for _, v := range vals {
		t := jsonType(v)
		if !slices.Contains(ts, any(t)) {
			ts = append(ts, t)
		}
	}
	switch len(ts) {
	case 0:
		return nil
	case 1:
		return ts[0]
	}
	return ts
}

func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		if x == float64(int64(x)) {
			return "integer"
		}
		return "number"
	case json.Number:
		if strings.ContainsAny(string(x), ".eE") {
			return "number"
		}
		return "integer"
	case string:
		return "string"
	case []any:
		return "array"
	default:
		return "object"
	}
}

// resolveRef resolves a local ref (#/$defs/X, #/definitions/X, or any JSON
// pointer into root).
func resolveRef(root map[string]any, ref string) (any, bool) {
	if ref == "#" {
		return root, true
	}
	p, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, false
	}
	var cur any = root
	for tok := range strings.SplitSeq(p, "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[tok]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// compileCheck compiles the schema with the JSON Schema library.
func compileCheck(root map[string]any) error {
	_, err := compileDoc(root)
	return err
}

const schemaURL = "mem:///input-schema.json"

// compileDoc compiles a decoded schema; remote $refs are not fetched.
func compileDoc(doc any) (*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.UseLoader(noLoader{})
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, err
	}
	s, err := c.Compile(schemaURL)
	if err != nil {
		return nil, trimCompileErr(err)
	}
	return s, nil
}

type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("remote schema %s is not fetched", url)
}

func trimCompileErr(err error) error {
	msg := strings.ReplaceAll(err.Error(), schemaURL, "schema")
	return fmt.Errorf("%s", msg)
}

// decodeSchema decodes JSON for the schema library (numbers as json.Number
// are what it wants; encoding/json's float64 works too).
func decodeSchema(raw []byte) (any, error) {
	return jsonschema.UnmarshalJSON(bytes.NewReader(raw))
}

func typeList(v any) ([]string, bool) {
	switch t := v.(type) {
	case nil:
		return nil, true
	case string:
		return []string{t}, true
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}

func stringList(v any) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	l, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("must be an array of property names, got %s", describe(v))
	}
	out := make([]string, 0, len(l))
	for _, e := range l {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("must hold property names, got %s", describe(e))
		}
		out = append(out, s)
	}
	return out, nil
}

func describe(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64, json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func describeJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func canonical(v any) string {
	b, _ := json.Marshal(v) // maps marshal with sorted keys
	return string(b)
}

func escPtr(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = deepCopy(e)
		}
		return l
	}
	return v
}
