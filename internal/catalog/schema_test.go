package catalog

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/toolbus-dev/toolbus/subjects"
)

func decode(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad test JSON %s: %v", s, err)
	}
	return v
}

func TestValidateSchema(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		schema  string
		health  subjects.ToolHealth
		reasons []string // substrings, each must appear in some reason
	}{
		{
			name:   "strict",
			schema: `{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}`,
			health: subjects.HealthStrict,
		},
		{
			name:   "strict empty",
			schema: `{"type":"object","properties":{},"required":[],"additionalProperties":false}`,
			health: subjects.HealthStrict,
		},
		{
			name:    "open object",
			schema:  `{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`,
			health:  subjects.HealthNonStrictOnly,
			reasons: []string{"#: additionalProperties is not set"},
		},
		{
			name:    "optional property",
			schema:  `{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string"}},"required":["city"],"additionalProperties":false}`,
			health:  subjects.HealthNonStrictOnly,
			reasons: []string{`property "unit" is optional`},
		},
		{
			name:    "missing properties",
			schema:  `{"type":"object","additionalProperties":false}`,
			health:  subjects.HealthNonStrictOnly,
			reasons: []string{"object without properties"},
		},
		{
			name:    "no type at root",
			schema:  `{"properties":{"q":{"type":"string"}},"required":["q"],"additionalProperties":false}`,
			health:  subjects.HealthInvalid,
			reasons: []string{"the root has no type"},
		},
		{
			name:    "root is a string",
			schema:  `{"type":"string"}`,
			health:  subjects.HealthInvalid,
			reasons: []string{`the root has type "string"`},
		},
		{
			name:    "root anyOf",
			schema:  `{"anyOf":[{"type":"object","properties":{},"required":[],"additionalProperties":false}]}`,
			health:  subjects.HealthInvalid,
			reasons: []string{"the root is an anyOf"},
		},
		{
			name:    "untyped property",
			schema:  `{"type":"object","properties":{"x":{"description":"anything"}},"required":["x"],"additionalProperties":false}`,
			health:  subjects.HealthNonStrictOnly,
			reasons: []string{"#/properties/x: no type"},
		},
		{
			name:    "unknown type",
			schema:  `{"type":"object","properties":{"x":{"type":"int"}},"required":["x"],"additionalProperties":false}`,
			health:  subjects.HealthInvalid,
			reasons: []string{`unknown type "int"`},
		},
		{
			name:   "local ref is strict",
			schema: `{"type":"object","$defs":{"P":{"type":"object","properties":{"n":{"type":"string"}},"required":["n"],"additionalProperties":false}},"properties":{"p":{"$ref":"#/$defs/P"}},"required":["p"],"additionalProperties":false}`,
			health: subjects.HealthStrict,
		},
		{
			name:    "dangling ref",
			schema:  `{"type":"object","properties":{"p":{"$ref":"#/$defs/Missing"}},"required":["p"],"additionalProperties":false}`,
			health:  subjects.HealthInvalid,
			reasons: []string{`$ref "#/$defs/Missing" does not resolve`},
		},
		{
			name:    "nested anyOf",
			schema:  `{"type":"object","properties":{"v":{"anyOf":[{"anyOf":[{"type":"string"},{"type":"number"}]},{"type":"null"}]}},"required":["v"],"additionalProperties":false}`,
			health:  subjects.HealthNonStrictOnly,
			reasons: []string{"anyOf nested directly in another anyOf"},
		},
		{
			name:    "duplicate anyOf",
			schema:  `{"type":"object","properties":{"v":{"anyOf":[{"type":"string"},{"type":"string"}]}},"required":["v"],"additionalProperties":false}`,
			health:  subjects.HealthNonStrictOnly,
			reasons: []string{"anyOf branch 1 repeats"},
		},
		{
			name:    "oneOf",
			schema:  `{"type":"object","properties":{"v":{"type":"string","oneOf":[{"minLength":1},{"maxLength":0}]}},"required":["v"],"additionalProperties":false}`,
			health:  subjects.HealthNonStrictOnly,
			reasons: []string{"oneOf is not supported in strict mode"},
		},
		{
			name:    "array without items",
			schema:  `{"type":"object","properties":{"l":{"type":"array"}},"required":["l"],"additionalProperties":false}`,
			health:  subjects.HealthNonStrictOnly,
			reasons: []string{"#/properties/l: array without items"},
		},
		{
			name:    "required unknown name",
			schema:  `{"type":"object","properties":{},"required":["ghost"],"additionalProperties":false}`,
			health:  subjects.HealthInvalid,
			reasons: []string{`required names "ghost"`},
		},
		{
			name:    "map-valued additionalProperties",
			schema:  `{"type":"object","properties":{"m":{"type":"object","properties":{},"required":[],"additionalProperties":{"type":"string"}}},"required":["m"],"additionalProperties":false}`,
			health:  subjects.HealthNonStrictOnly,
			reasons: []string{"additionalProperties is a schema"},
		},
		{
			name:    "not a JSON Schema",
			schema:  `{"type":"object","properties":{"x":{"type":"string","minLength":"three"}},"required":["x"],"additionalProperties":false}`,
			health:  subjects.HealthInvalid,
			reasons: []string{"not a valid JSON Schema"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, reasons := ValidateSchema(decode(t, tt.schema))
			if h != tt.health {
				t.Errorf("health = %s, want %s (reasons %q)", h, tt.health, reasons)
			}
			if tt.health == subjects.HealthStrict && len(reasons) > 0 {
				t.Errorf("strict schema got reasons %q", reasons)
			}
			for _, want := range tt.reasons {
				if !containsSub(reasons, want) {
					t.Errorf("reasons %q lack %q", reasons, want)
				}
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		schema string
		want   string // the normalized schema, compared as JSON
		health subjects.ToolHealth
		fixes  []string
	}{
		{
			name:   "already strict",
			schema: `{"type":"object","properties":{"a":{"type":"string"}},"required":["a"],"additionalProperties":false}`,
			want:   `{"type":"object","properties":{"a":{"type":"string"}},"required":["a"],"additionalProperties":false}`,
			health: subjects.HealthStrict,
		},
		{
			name:   "missing properties",
			schema: `{"type":"object"}`,
			want:   `{"type":"object","properties":{},"required":[],"additionalProperties":false}`,
			health: subjects.HealthStrict,
			fixes:  []string{"#: added empty properties", "#: set additionalProperties false"},
		},
		{
			name:   "no type",
			schema: `{"properties":{"q":{"type":"string"}},"required":["q"]}`,
			want:   `{"type":"object","properties":{"q":{"type":"string"}},"required":["q"],"additionalProperties":false}`,
			health: subjects.HealthStrict,
			fixes:  []string{`#: added "type": "object" at the root`},
		},
		{
			name:   "optional becomes nullable",
			schema: `{"type":"object","properties":{"q":{"type":"string"},"n":{"type":"integer"},"e":{"type":"string","enum":["a","b"]}},"required":["q"],"additionalProperties":false}`,
			want:   `{"type":"object","properties":{"q":{"type":"string"},"n":{"type":["integer","null"]},"e":{"type":["string","null"],"enum":["a","b",null]}},"required":["q","e","n"],"additionalProperties":false}`,
			health: subjects.HealthStrict,
			fixes:  []string{`made optional property "n" required and nullable`},
		},
		{
			name:   "ref inlined and defs dropped",
			schema: `{"type":"object","$defs":{"Addr":{"type":"object","properties":{"city":{"type":"string"}}}},"properties":{"home":{"$ref":"#/$defs/Addr","description":"home address"}},"required":["home"]}`,
			want:   `{"type":"object","properties":{"home":{"type":"object","description":"home address","properties":{"city":{"type":["string","null"]}},"required":["city"],"additionalProperties":false}},"required":["home"],"additionalProperties":false}`,
			health: subjects.HealthStrict,
			fixes:  []string{`inlined $ref "#/$defs/Addr"`, "removed $defs"},
		},
		{
			name:   "draft-07 definitions",
			schema: `{"type":"object","definitions":{"N":{"type":"number"}},"properties":{"x":{"$ref":"#/definitions/N"}},"required":["x"],"additionalProperties":false}`,
			want:   `{"type":"object","properties":{"x":{"type":"number"}},"required":["x"],"additionalProperties":false}`,
			health: subjects.HealthStrict,
			fixes:  []string{"removed definitions"},
		},
		{
			name:   "recursive ref kept",
			schema: `{"type":"object","$defs":{"Node":{"type":"object","properties":{"next":{"$ref":"#/$defs/Node"}},"required":["next"],"additionalProperties":false}},"properties":{"head":{"$ref":"#/$defs/Node"}},"required":["head"],"additionalProperties":false}`,
			health: subjects.HealthStrict,
			fixes:  []string{`inlined $ref "#/$defs/Node"`},
		},
		{
			name:   "dangling ref stays invalid",
			schema: `{"type":"object","properties":{"p":{"$ref":"#/$defs/Gone"}},"required":["p"],"additionalProperties":false}`,
			want:   `{"type":"object","properties":{"p":{"$ref":"#/$defs/Gone"}},"required":["p"],"additionalProperties":false}`,
			health: subjects.HealthInvalid,
		},
		{
			name:   "nested anyOf flattened and deduplicated",
			schema: `{"type":"object","properties":{"v":{"anyOf":[{"anyOf":[{"type":"string"},{"type":"number"}]},{"type":"string"},{"type":"null"}]}},"required":["v"],"additionalProperties":false}`,
			want:   `{"type":"object","properties":{"v":{"anyOf":[{"type":"string"},{"type":"number"},{"type":"null"}]}},"required":["v"],"additionalProperties":false}`,
			health: subjects.HealthStrict,
			fixes:  []string{"flattened a nested anyOf", "removed a duplicate anyOf branch"},
		},
		{
			name:   "one-branch anyOf unwrapped",
			schema: `{"type":"object","properties":{"v":{"anyOf":[{"type":"string"},{"type":"string"}],"description":"d"}},"required":["v"],"additionalProperties":false}`,
			want:   `{"type":"object","properties":{"v":{"type":"string","description":"d"}},"required":["v"],"additionalProperties":false}`,
			health: subjects.HealthStrict,
			fixes:  []string{"unwrapped a one-branch anyOf"},
		},
		{
			name:   "types inferred",
			schema: `{"type":"object","properties":{"e":{"enum":["a","b"]},"l":{"items":{"type":"string"}},"o":{"properties":{}}},"required":["e","l","o"],"additionalProperties":false}`,
			want:   `{"type":"object","properties":{"e":{"type":"string","enum":["a","b"]},"l":{"type":"array","items":{"type":"string"}},"o":{"type":"object","properties":{},"required":[],"additionalProperties":false}},"required":["e","l","o"],"additionalProperties":false}`,
			health: subjects.HealthStrict,
			fixes:  []string{`#/properties/e: added type "string"`, `#/properties/l: added type "array"`},
		},
		{
			name:   "required name not in properties dropped",
			schema: `{"type":"object","properties":{},"required":["ghost"],"additionalProperties":false}`,
			want:   `{"type":"object","properties":{},"required":[],"additionalProperties":false}`,
			health: subjects.HealthStrict,
			fixes:  []string{`dropped "ghost" from required`},
		},
		{
			name:   "untyped free-form property stays non-strict",
			schema: `{"type":"object","properties":{"x":{"description":"anything"}},"required":["x"]}`,
			want:   `{"type":"object","properties":{"x":{"description":"anything"}},"required":["x"],"additionalProperties":false}`,
			health: subjects.HealthNonStrictOnly,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := decode(t, tt.schema)
			before := canonical(in)
			out, fixes := Normalize(in)
			if canonical(in) != before {
				t.Fatal("Normalize changed its input")
			}
			if tt.want != "" && canonical(out) != canonical(decode(t, tt.want)) {
				t.Errorf("normalized\n got %s\nwant %s", canonical(out), canonical(decode(t, tt.want)))
			}
			h, reasons := ValidateSchema(out)
			if h != tt.health {
				t.Errorf("health after normalizing = %s, want %s (reasons %q)", h, tt.health, reasons)
			}
			for _, want := range tt.fixes {
				if !containsSub(fixes, want) {
					t.Errorf("fixes %q lack %q", fixes, want)
				}
			}
		})
	}
}

func TestArgsValidator(t *testing.T) {
	t.Parallel()
	schema := json.RawMessage(`{"type":"object","properties":{
		"city":{"type":"string","minLength":1},
		"days":{"type":"integer","minimum":1,"maximum":14},
		"address":{"type":"object","properties":{"zip":{"type":"string","pattern":"^[0-9]{5}$"}},"required":["zip"]},
		"tags":{"type":"array","items":{"type":"string"}}},
		"required":["city"],"additionalProperties":false}`)
	v := newArgsValidator(schema, nil)
	tests := []struct {
		name string
		args string
		want []string // substrings of the error; none = valid
	}{
		{"valid", `{"city":"Oslo","days":3}`, nil},
		{"empty args against required", ``, []string{`missing property 'city'`}},
		{"null is an empty object", `null`, []string{`missing property 'city'`}},
		{"wrong type", `{"city":42}`, []string{`argument "city"`, "want string"}},
		{"out of range", `{"city":"Oslo","days":30}`, []string{`argument "days"`, "14"}},
		{"nested", `{"city":"Oslo","address":{"zip":"abc"}}`, []string{`argument "address.zip"`}},
		{"array item", `{"city":"Oslo","tags":["a",2]}`, []string{`argument "tags[1]"`}},
		{"unknown field", `{"city":"Oslo","color":"red"}`, []string{"additional properties 'color'"}},
		{"not an object", `[1,2]`, []string{"must be a JSON object"}},
		{"malformed", `{"city":`, []string{"not valid JSON"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := v.validate(json.RawMessage(tt.args))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want error with %q, got nil", tt.want)
			}
			if !errors.Is(err, ErrInvalidArguments) {
				t.Errorf("error %v is not ErrInvalidArguments", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	// A schema that does not compile falls back to the normalized one, then
	// to an object check.
	broken := newArgsValidator(json.RawMessage(`{"type":"object","properties":{"p":{"$ref":"#/$defs/Gone"}}}`), nil)
	if err := broken.validate(json.RawMessage(`{"p":1}`)); err != nil {
		t.Errorf("uncompilable schema: want object check only, got %v", err)
	}
	if err := broken.validate(json.RawMessage(`"x"`)); err == nil {
		t.Error("uncompilable schema: a string passed the object check")
	}
}

func containsSub(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
