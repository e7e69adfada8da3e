// Package email sends the service's emails through one of two real
// backends: a local outbox (one RFC 5322 .eml file per message, the local
// stack's default) or SendGrid's v3 mail/send API through sendgrid-go.
// Message bodies come from html/template templates (templates.go).
//
// This package must never log message bodies: they carry secret links.
package email

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sendgrid/rest"
	"github.com/sendgrid/sendgrid-go"
	sgmail "github.com/sendgrid/sendgrid-go/helpers/mail"

	"github.com/nounsai/sdserver/shared/config"
)

// Message is one email. Text and HTML are alternative bodies of the same
// content; at least one is required.
type Message struct {
	To      string
	Subject string
	Text    string
	HTML    string
}

// Sender delivers messages. Implementations are safe for concurrent use.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// Config selects and configures a backend.
type Config struct {
	// Backend is "outbox" (default) or "sendgrid" (EMAIL_BACKEND).
	Backend string
	// From is the sender address (EMAIL_FROM, default admin@nounsai.wtf).
	From string
	// FromName is the sender display name.
	FromName string
	// OutboxDir is where the outbox writes .eml files (OUTBOX_DIR).
	OutboxDir string
	// SendGridKey is the API key (SENDGRID_API_KEY, legacy sendgrid_api_key).
	SendGridKey string
	// SendGridHost is the API base URL (SENDGRID_HOST), for tests and
	// data residency; default https://api.sendgrid.com.
	SendGridHost string
}

// LoadConfig reads the email settings.
func LoadConfig(l *config.Loader) Config {
	return Config{
		Backend:      l.String("EMAIL_BACKEND", "", "outbox"),
		From:         l.String("EMAIL_FROM", "", "admin@nounsai.wtf"),
		FromName:     l.String("EMAIL_FROM_NAME", "", "NounsAI"),
		OutboxDir:    l.String("OUTBOX_DIR", "", ".run/outbox"),
		SendGridKey:  l.Credential("SENDGRID_API_KEY", "sendgrid_api_key", ""),
		SendGridHost: l.String("SENDGRID_HOST", "", "https://api.sendgrid.com"),
	}
}

// Validate names the first bad setting.
func (c Config) Validate() error {
	if _, err := mail.ParseAddress(c.From); err != nil {
		return fmt.Errorf("EMAIL_FROM: %w", err)
	}
	switch c.Backend {
	case "outbox":
		if c.OutboxDir == "" {
			return errors.New("OUTBOX_DIR: must not be empty with EMAIL_BACKEND=outbox")
		}
	case "sendgrid":
		if c.SendGridKey == "" {
			return errors.New("SENDGRID_API_KEY: required with EMAIL_BACKEND=sendgrid")
		}
	default:
		return fmt.Errorf("EMAIL_BACKEND: must be outbox or sendgrid, got %q", c.Backend)
	}
	return nil
}

// New returns the configured backend.
func New(c Config) (Sender, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	from := mail.Address{Name: c.FromName, Address: c.From}
	if c.Backend == "sendgrid" {
		return NewSendGrid(c.SendGridKey, c.SendGridHost, from, nil), nil
	}
	return NewOutbox(c.OutboxDir, from), nil
}

func (m Message) validate() error {
	if _, err := mail.ParseAddress(m.To); err != nil {
		return fmt.Errorf("recipient: %w", err)
	}
	if m.Subject == "" || (m.Text == "" && m.HTML == "") {
		return errors.New("message needs a subject and a body")
	}
	if strings.ContainsAny(m.Subject, "\r\n") {
		return errors.New("subject must be one line")
	}
	return nil
}

// Outbox writes each message as an RFC 5322 file (multipart/alternative
// with text and HTML parts) named <unix-nanos>-<random>.eml in Dir.
type Outbox struct {
	Dir  string
	From mail.Address
	// Now is the clock for the Date header; nil means time.Now.
	Now func() time.Time
}

// NewOutbox returns an outbox writing to dir.
func NewOutbox(dir string, from mail.Address) *Outbox {
	return &Outbox{Dir: dir, From: from}
}

// Send writes m to a new file, atomically (write then rename).
func (o *Outbox) Send(ctx context.Context, m Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := m.validate(); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	raw, err := render(o.From, m, now().UTC())
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return fmt.Errorf("outbox: create dir: %w", err)
	}
	name := fmt.Sprintf("%d-%s.eml", now().UnixNano(), randomHex(4))
	tmp := filepath.Join(o.Dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, raw, 0o640); err != nil {
		return fmt.Errorf("outbox: write: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(o.Dir, name)); err != nil {
		return fmt.Errorf("outbox: rename: %w", err)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// render builds the RFC 5322 message with CRLF line endings.
func render(from mail.Address, m Message, date time.Time) ([]byte, error) {
	var b strings.Builder
	boundary := "nounsai-" + randomHex(12)
	to := mail.Address{Address: m.To}
	hdr := [][2]string{
		{"From", from.String()},
		{"To", to.String()},
		{"Subject", mimeWord(m.Subject)},
		{"Date", date.Format(time.RFC1123Z)},
		{"Message-ID", fmt.Sprintf("<%s@%s>", randomHex(16), domainOf(from.Address))},
		{"MIME-Version", "1.0"},
		{"Content-Type", fmt.Sprintf("multipart/alternative; boundary=%q", boundary)},
	}
	for _, h := range hdr {
		b.WriteString(h[0] + ": " + h[1] + "\r\n")
	}
	b.WriteString("\r\n")
	mw := multipart.NewWriter(&b)
	if err := mw.SetBoundary(boundary); err != nil {
		return nil, err
	}
	parts := []struct{ ctype, body string }{{"text/plain; charset=utf-8", m.Text}, {"text/html; charset=utf-8", m.HTML}}
	for _, p := range parts {
		if p.body == "" {
			continue
		}
		w, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {p.ctype},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		if err != nil {
			return nil, err
		}
		qp := quotedprintable.NewWriter(w)
		if _, err := qp.Write([]byte(strings.ReplaceAll(p.body, "\n", "\r\n"))); err != nil {
			return nil, err
		}
		if err := qp.Close(); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

func mimeWord(s string) string {
	for _, r := range s {
		if r > 0x7e {
			return mimeQ(s)
		}
	}
	return s
}

func mimeQ(s string) string { return "=?utf-8?q?" + strings.ReplaceAll(qpEncode(s), " ", "_") + "?=" }

func qpEncode(s string) string {
	var b strings.Builder
	w := quotedprintable.NewWriter(&b)
	_, _ = w.Write([]byte(s))
	_ = w.Close()
	return strings.ReplaceAll(b.String(), "=\r\n", "")
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return "localhost"
}

// SendGrid sends through the SendGrid v3 mail/send API.
type SendGrid struct {
	key  string
	host string
	from mail.Address
	http *rest.Client
}

// NewSendGrid returns a SendGrid sender. host is the API base URL ("" for
// the default); hc may be nil for a client with a 15 s timeout.
func NewSendGrid(key, host string, from mail.Address, hc *http.Client) *SendGrid {
	if hc == nil {
		hc = &http.Client{Timeout: 15 * time.Second}
	}
	return &SendGrid{key: key, host: strings.TrimRight(host, "/"), from: from, http: &rest.Client{HTTPClient: hc}}
}

// Send posts m to /v3/mail/send. Any status but 2xx is an error naming the
// status (the body is not included: it may echo addresses).
func (s *SendGrid) Send(ctx context.Context, m Message) error {
	if err := m.validate(); err != nil {
		return fmt.Errorf("sendgrid: %w", err)
	}
	var contents []*sgmail.Content
	if m.Text != "" {
		contents = append(contents, sgmail.NewContent("text/plain", m.Text))
	}
	if m.HTML != "" {
		contents = append(contents, sgmail.NewContent("text/html", m.HTML))
	}
	msg := sgmail.NewV3MailInit(sgmail.NewEmail(s.from.Name, s.from.Address), m.Subject,
		sgmail.NewEmail("", m.To), contents...)
	req := sendgrid.GetRequest(s.key, "/v3/mail/send", s.host)
	req.Method = rest.Post
	req.Headers["Content-Type"] = "application/json"
	req.Body = sgmail.GetRequestBody(msg)
	resp, err := s.http.SendWithContext(ctx, req)
	if err != nil {
		return fmt.Errorf("sendgrid: send: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("sendgrid: send: status %d", resp.StatusCode)
	}
	return nil
}
