package email_test

import (
	"context"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/email"
	"github.com/nounsai/sdserver/shared/email/emailtest"
)

func TestOutboxWritesRFC5322(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ob := email.NewOutbox(dir, mail.Address{Name: "NounsAI", Address: "admin@nounsai.wtf"})
	m, err := email.Verification("new@example.com", "http://127.0.0.1:8080/verify/abc123")
	require.NoError(t, err)
	require.NoError(t, ob.Send(context.Background(), m))

	files, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	require.NoError(t, err)
	require.Len(t, files, 1)
	f, err := os.Open(files[0])
	require.NoError(t, err)
	defer f.Close()
	parsed, err := mail.ReadMessage(f)
	require.NoError(t, err)
	require.Equal(t, email.SubjectVerification, parsed.Header.Get("Subject"))
	require.Equal(t, "<new@example.com>", parsed.Header.Get("To"))
	require.Contains(t, parsed.Header.Get("Content-Type"), "multipart/alternative")
	_, err = parsed.Header.Date()
	require.NoError(t, err)
	raw, err := os.ReadFile(files[0])
	require.NoError(t, err)
	require.Contains(t, string(raw), "text/plain")
	require.Contains(t, string(raw), "text/html")
	require.Contains(t, string(raw), "http://127.0.0.1:8080/verify/abc123")
}

func TestOutboxRejectsBadMessages(t *testing.T) {
	t.Parallel()
	ob := email.NewOutbox(t.TempDir(), mail.Address{Address: "admin@nounsai.wtf"})
	require.Error(t, ob.Send(context.Background(), email.Message{To: "not an address", Subject: "x", Text: "y"}))
	require.Error(t, ob.Send(context.Background(), email.Message{To: "a@b.c", Subject: "x\r\nBcc: evil@x", Text: "y"}))
}

func TestSendGridAgainstFake(t *testing.T) {
	t.Parallel()
	fake := emailtest.NewSendGrid(t, "SG.test-key")
	sg := email.NewSendGrid("SG.test-key", fake.URL, mail.Address{Name: "NounsAI", Address: "admin@nounsai.wtf"}, nil)
	m, err := email.PasswordReset("user@example.com", "http://x/reset/k")
	require.NoError(t, err)
	require.NoError(t, sg.Send(context.Background(), m))
	got := fake.Mails()
	require.Len(t, got, 1)
	require.Equal(t, "user@example.com", got[0].Personalizations[0].To[0].Email)
	require.Equal(t, "admin@nounsai.wtf", got[0].From.Email)
	require.Equal(t, email.SubjectPasswordReset, got[0].Subject)
	require.Len(t, got[0].Content, 2)
	require.Equal(t, "text/plain", got[0].Content[0].Type)
	require.True(t, strings.Contains(got[0].Content[1].Value, "http://x/reset/k"))

	bad := email.NewSendGrid("wrong", fake.URL, mail.Address{Address: "admin@nounsai.wtf"}, nil)
	err = bad.Send(context.Background(), m)
	require.ErrorContains(t, err, "status 401")

	fake.FailNext(1)
	require.ErrorContains(t, sg.Send(context.Background(), m), "status 500")
	require.NoError(t, sg.Send(context.Background(), m))
	require.Len(t, fake.Mails(), 2)
}
