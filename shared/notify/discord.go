// Package notify posts operator notifications to a Discord webhook (the
// legacy video_generation_discord_webhook), in the legacy embed format.
//
// A Discord without a URL skips every message: an unconfigured webhook is
// never an error (legacy C19 crashed on it). This package must never log
// or return the webhook URL, which is a secret.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Field is one embed field.
type Field struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Embed is one Discord embed.
type Embed struct {
	Title       string  `json:"title"`
	Description string  `json:"description"`
	Fields      []Field `json:"fields"`
}

// Message is a webhook message: {"tts": false, "embeds": [...]}.
type Message struct {
	TTS    bool    `json:"tts"`
	Embeds []Embed `json:"embeds"`
}

// Limits Discord puts on an embed; longer text is cut.
const (
	MaxDescription = 4096
	MaxFieldValue  = 1024
)

// Discord posts messages to one webhook URL. Safe for concurrent use.
type Discord struct {
	url    string
	client *http.Client
}

// NewDiscord returns a webhook client for url; "" skips every message.
// client nil means a client with a 10s timeout.
func NewDiscord(url string, client *http.Client) *Discord {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &Discord{url: url, client: client}
}

// Enabled reports whether a URL is configured.
func (d *Discord) Enabled() bool { return d != nil && d.url != "" }

// Send posts m. It returns (false, nil) when no URL is configured; any
// non-2xx answer is an error.
func (d *Discord) Send(ctx context.Context, m Message) (sent bool, err error) {
	if !d.Enabled() {
		return false, nil
	}
	for i := range m.Embeds {
		m.Embeds[i].Description = cut(m.Embeds[i].Description, MaxDescription)
		for k := range m.Embeds[i].Fields {
			m.Embeds[i].Fields[k].Value = cut(m.Embeds[i].Fields[k].Value, MaxFieldValue)
		}
	}
	body, err := json.Marshal(m)
	if err != nil {
		return false, fmt.Errorf("encode discord message: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("build discord request: invalid webhook url")
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		// The error text names the URL; keep only the cause's kind.
		return false, fmt.Errorf("post discord webhook: request failed (%T)", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return false, fmt.Errorf("post discord webhook: status %d", resp.StatusCode)
	}
	return true, nil
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// Clock formats d as the legacy H:MM:SS (Python's str(timedelta) without
// fractions).
func Clock(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
}
