// Command apicompat is the breaking-change guard of `make lint`: it
// compares the OpenAPI document with the last released copy and fails on
// a removed operation, response status or response field, unless the
// changelog's "Unreleased" section lists that change (the exact line it
// prints, e.g. "- removed field: GET /users/{user_id} 200 .email").
//
//	apicompat -released api/openapi.released.yaml -current api/openapi.yaml -changelog api/CHANGELOG.md
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "apicompat:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("apicompat", flag.ContinueOnError)
	released := fs.String("released", "", "the last released OpenAPI document")
	current := fs.String("current", "", "the OpenAPI document as it is now")
	changelog := fs.String("changelog", "", "the changelog (Markdown) with an Unreleased section")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *released == "" || *current == "" || *changelog == "" {
		return fmt.Errorf("-released, -current and -changelog are required")
	}
	old, err := load(*released)
	if err != nil {
		return err
	}
	cur, err := load(*current)
	if err != nil {
		return err
	}
	log, err := os.ReadFile(*changelog)
	if err != nil {
		return err
	}
	marked := unreleased(string(log))
	var unmarked []string
	for _, c := range Removals(old, cur) {
		if !slices.Contains(marked, c) {
			unmarked = append(unmarked, c)
		}
	}
	if len(unmarked) > 0 {
		fmt.Fprintf(out, "breaking changes against %s that %s does not list under \"## Unreleased\":\n", *released, *changelog)
		for _, c := range unmarked {
			fmt.Fprintf(out, "- %s\n", c)
		}
		return fmt.Errorf("%d unlisted breaking change(s): restore them, or list each line above in the changelog", len(unmarked))
	}
	fmt.Fprintf(out, "apicompat: no unlisted breaking change against %s\n", *released)
	return nil
}

func load(path string) (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return doc, nil
}

// unreleased returns the list items ("- text", trimmed) of the changelog's
// "## Unreleased" section.
func unreleased(md string) []string {
	var items []string
	in := false
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "## ") {
			in = strings.EqualFold(strings.TrimSpace(strings.TrimPrefix(line, "## ")), "Unreleased")
			continue
		}
		if in {
			if item, ok := strings.CutPrefix(strings.TrimSpace(line), "- "); ok {
				items = append(items, strings.Trim(strings.TrimSpace(item), "`"))
			}
		}
	}
	return items
}

// Removals lists what cur removed from old: operations ("removed
// operation: GET /x"), response statuses ("removed status: GET /x 404") and
// fields of JSON response bodies ("removed field: GET /x 200 .a[].b").
func Removals(old, cur *openapi3.T) []string {
	var out []string
	for _, path := range sortedKeys(old.Paths.Map()) {
		oldItem := old.Paths.Value(path)
		curItem := cur.Paths.Value(path)
		for _, method := range sortedKeys(oldItem.Operations()) {
			oldOp := oldItem.GetOperation(method)
			var curOp *openapi3.Operation
			if curItem != nil {
				curOp = curItem.GetOperation(method)
			}
			op := method + " " + path
			if curOp == nil {
				out = append(out, "removed operation: "+op)
				continue
			}
			for _, status := range sortedKeys(oldOp.Responses.Map()) {
				oldResp := oldOp.Responses.Value(status)
				curResp := curOp.Responses.Value(status)
				if curResp == nil {
					out = append(out, fmt.Sprintf("removed status: %s %s", op, status))
					continue
				}
				have := fields(jsonSchema(curResp))
				for _, f := range fields(jsonSchema(oldResp)) {
					if !slices.Contains(have, f) {
						out = append(out, fmt.Sprintf("removed field: %s %s %s", op, status, f))
					}
				}
			}
		}
	}
	return out
}

// jsonSchema is the application/json schema of a response, nil if none.
func jsonSchema(r *openapi3.ResponseRef) *openapi3.SchemaRef {
	if r == nil || r.Value == nil {
		return nil
	}
	if mt := r.Value.Content.Get("application/json"); mt != nil {
		return mt.Schema
	}
	return nil
}

// fields lists the property paths a schema describes (".a", ".a[].b"),
// through $refs, arrays and allOf/anyOf/oneOf.
func fields(s *openapi3.SchemaRef) []string {
	var out []string
	var walk func(s *openapi3.SchemaRef, prefix string, depth int)
	walk = func(s *openapi3.SchemaRef, prefix string, depth int) {
		if s == nil || s.Value == nil || depth > 12 {
			return
		}
		v := s.Value
		for _, name := range sortedKeys(v.Properties) {
			p := prefix + "." + name
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
			walk(v.Properties[name], p, depth+1)
		}
		if v.Items != nil {
			walk(v.Items, prefix+"[]", depth+1)
		}
		for _, group := range []openapi3.SchemaRefs{v.AllOf, v.AnyOf, v.OneOf} {
			for _, sub := range group {
				walk(sub, prefix, depth+1)
			}
		}
	}
	walk(s, "", 0)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
