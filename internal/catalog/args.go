package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

var printer = message.NewPrinter(language.English)

// argsValidator checks a tool's arguments. It is built once per catalog
// revision of the tool and shared by every call.
type argsValidator struct {
	schema *jsonschema.Schema // nil: nothing compiled; only "is an object" is checked
}

// newArgsValidator compiles the schema the server gave (so a call the server
// would accept is never refused), falling back to the normalized one when
// the original does not compile, and to an object check when neither does.
func newArgsValidator(original, normalized json.RawMessage) *argsValidator {
	for _, raw := range []json.RawMessage{original, normalized} {
		if len(raw) == 0 {
			continue
		}
		doc, err := decodeSchema(raw)
		if err != nil {
			continue
		}
		if s, err := compileDoc(doc); err == nil {
			return &argsValidator{schema: s}
		}
	}
	return &argsValidator{}
}

// validate returns nil or an *ArgumentsError.
func (v *argsValidator) validate(args json.RawMessage) error {
	args = bytes.TrimSpace(args)
	if len(args) == 0 || bytes.Equal(args, []byte("null")) {
		args = []byte("{}")
	}
	if args[0] != '{' {
		return &ArgumentsError{Problems: []string{"arguments must be a JSON object like {\"name\": value}"}}
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(args))
	if err != nil {
		return &ArgumentsError{Problems: []string{"arguments are not valid JSON: " + err.Error()}}
	}
	if v.schema == nil {
		return nil
	}
	err = v.schema.Validate(inst)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return &ArgumentsError{Problems: []string{err.Error()}}
	}
	return &ArgumentsError{Problems: leafProblems(ve)}
}

// ArgumentsError says which arguments break the tool's input schema, one
// problem per failing field, e.g. `argument "city": got number, want string`.
type ArgumentsError struct {
	Problems []string
}

func (e *ArgumentsError) Error() string {
	return "invalid arguments: " + strings.Join(e.Problems, "; ")
}

// Is makes errors.Is(err, ErrInvalidArguments) true.
func (e *ArgumentsError) Is(target error) bool { return target == ErrInvalidArguments }

const maxProblems = 5

func leafProblems(ve *jsonschema.ValidationError) []string {
	var out []string
	seen := map[string]bool{}
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		msg := e.ErrorKind.LocalizedString(printer)
		if len(e.InstanceLocation) > 0 {
			msg = where(e.InstanceLocation) + ": " + msg
		}
		if !seen[msg] {
			seen[msg] = true
			out = append(out, msg)
		}
	}
	walk(ve)
	if len(out) > maxProblems {
		n := len(out) - maxProblems
		out = append(out[:maxProblems], fmt.Sprintf("and %d more", n))
	}
	if len(out) == 0 {
		out = []string{ve.Error()}
	}
	return out
}

// where names an instance location the way a person reads it:
// `argument "address.city"`, `argument "tags[2]"`.
func where(loc []string) string {
	if len(loc) == 0 {
		return "arguments"
	}
	var b strings.Builder
	for i, tok := range loc {
		if _, err := strconv.Atoi(tok); err == nil && i > 0 {
			b.WriteString("[" + tok + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return "argument " + strconv.Quote(b.String())
}
