package library

import (
	"bytes"
	"encoding/json"
	"strings"
)

// maxPublicString is the longest string value a public view keeps; longer
// ones are inlined inputs (base64 images, masks) whatever their key.
const maxPublicString = 2048

// privateMetadataKeys are metadata keys (compared in lower case) whose
// values never appear in a public view, at any depth: the requester's own
// input images and masks, account details, and references to other stored
// objects (an uploaded video's frame names the private video it came from).
var privateMetadataKeys = map[string]bool{
	"base_64": true, "base64": true, "mask": true, "init_image": true, "image": true, "input_image": true,
	"images": true, "control_image": true, "user_id": true, "email": true, "token": true, "authorization": true,
	"password": true, "api_key": true, "cdn_id": true,
}

// privateMetadataKey reports whether a metadata key is private: one of
// privateMetadataKeys, or any key naming a stored object (…_cdn_id, such
// as video_cdn_id and audio_cdn_id).
func privateMetadataKey(k string) bool {
	k = strings.ToLower(k)
	return privateMetadataKeys[k] || strings.HasSuffix(k, "_cdn_id")
}

// PublicMetadata returns the view of a row's metadata that anyone may see
// (the public gallery, templates): the JSON object with every private key
// removed and every string that is long or a data URL (an inlined input,
// whatever its key) dropped, recursively through nested objects and lists.
// Anything but a JSON object becomes {}. Every public view of library
// metadata goes through this one function.
func PublicMetadata(raw []byte) json.RawMessage {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return json.RawMessage("{}")
	}
	out, err := json.Marshal(publicValue(m))
	if err != nil {
		return json.RawMessage("{}")
	}
	return out
}

// publicValue strips v (a value decoded with UseNumber) in place and
// returns it; keep is false when v itself must go (a private string).
func publicValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if privateMetadataKey(k) {
				delete(x, k)
				continue
			}
			if e, keep := publicElem(e); keep {
				x[k] = e
			} else {
				delete(x, k)
			}
		}
		return x
	case []any:
		out := x[:0]
		for _, e := range x {
			if e, keep := publicElem(e); keep {
				out = append(out, e)
			}
		}
		return out
	}
	return v
}

// publicElem returns e stripped, and whether it may stay at all.
func publicElem(e any) (any, bool) {
	if s, ok := e.(string); ok {
		return s, len(s) <= maxPublicString && !strings.HasPrefix(strings.ToLower(strings.TrimSpace(s)), "data:")
	}
	return publicValue(e), true
}
