package email

import (
	"bytes"
	"fmt"
	htmltemplate "html/template"
	"strings"
	texttemplate "text/template"
)

// The legacy subjects (docs/legacy-contract.md §6.1), plus the notice sent when
// someone signs up with an address that already has an account.
const (
	SubjectVerification  = "NounsAI Playground Verification"
	SubjectPasswordReset = "NounsAI Playground Password Reset"
	SubjectAccountExists = "NounsAI Playground Sign-up Attempt"
	SubjectVideoSuccess  = "NounsAI Video Generation Success"
	SubjectVideoFailure  = "NounsAI Video Generation Failure!"
)

type template struct {
	subject string
	html    *htmltemplate.Template
	text    *texttemplate.Template
}

func newTemplate(subject, html, text string) template {
	return template{
		subject: subject,
		html:    htmltemplate.Must(htmltemplate.New(subject).Parse(layoutHTML(html))),
		text:    texttemplate.Must(texttemplate.New(subject).Parse(text)),
	}
}

func layoutHTML(body string) string {
	return `<!DOCTYPE html><html><body style="font-family:sans-serif;max-width:560px;margin:auto">` +
		body + `<p style="color:#888;font-size:12px">NounsAI Playground — nounsai.wtf</p></body></html>`
}

func (t template) render(to string, data any) (Message, error) {
	var h, x bytes.Buffer
	if err := t.html.Execute(&h, data); err != nil {
		return Message{}, fmt.Errorf("render %q html: %w", t.subject, err)
	}
	if err := t.text.Execute(&x, data); err != nil {
		return Message{}, fmt.Errorf("render %q text: %w", t.subject, err)
	}
	return Message{To: to, Subject: t.subject, HTML: h.String(), Text: strings.TrimSpace(x.String()) + "\n"}, nil
}

var (
	verificationTmpl = newTemplate(SubjectVerification,
		`<h2>Welcome to NounsAI Playground</h2><p>Please verify your email address by opening this link:</p>`+
			`<p><a href="{{.Link}}">Verify my email</a></p><p>{{.Link}}</p><p>The link is valid for 7 days.</p>`,
		`Welcome to NounsAI Playground!

Please verify your email address by opening this link:
{{.Link}}

The link is valid for 7 days.`)
	resetTmpl = newTemplate(SubjectPasswordReset,
		`<h2>Reset your password</h2><p>Someone asked to reset the password of your NounsAI Playground account. `+
			`If it was you, open this link within one hour:</p><p><a href="{{.Link}}">Choose a new password</a></p><p>{{.Link}}</p>`+
			`<p>If it wasn't you, ignore this email; your password stays as it is.</p>`,
		`Someone asked to reset the password of your NounsAI Playground account.
If it was you, open this link within one hour:
{{.Link}}

If it wasn't you, ignore this email; your password stays as it is.`)
	existsTmpl = newTemplate(SubjectAccountExists,
		`<h2>You already have an account</h2><p>Someone (maybe you) tried to sign up to NounsAI Playground with this `+
			`email address, which already has an account. You can log in, or reset your password here:</p>`+
			`<p><a href="{{.Link}}">{{.Link}}</a></p><p>If it wasn't you, ignore this email.</p>`,
		`Someone (maybe you) tried to sign up to NounsAI Playground with this email address,
which already has an account. You can log in, or reset your password here:
{{.Link}}

If it wasn't you, ignore this email.`)
	videoSuccessTmpl = newTemplate(SubjectVideoSuccess,
		`<h2>Your video is ready</h2><p>Your NounsAI video has finished rendering. Download it here:</p>`+
			`<p><a href="{{.Link}}">{{.Link}}</a></p>`,
		`Your NounsAI video has finished rendering. Download it here:
{{.Link}}`)
	videoFailureTmpl = newTemplate(SubjectVideoFailure,
		`<h2>Your video could not be generated</h2><p>Sorry, something went wrong while rendering your video. `+
			`Try smaller images (for example 512x512) and check that your audio file plays, then queue it again at `+
			`<a href="{{.Link}}">{{.Link}}</a>.</p>`,
		`Sorry, something went wrong while rendering your video.
Try smaller images (for example 512x512) and check that your audio file plays,
then queue it again at {{.Link}}.`)
)

type linkData struct{ Link string }

// Verification returns the sign-up verification email linking to link
// (APP_BASE_URL/verify/<key>).
func Verification(to, link string) (Message, error) {
	return verificationTmpl.render(to, linkData{link})
}

// PasswordReset returns the password-reset email linking to link
// (APP_BASE_URL/reset/<key>).
func PasswordReset(to, link string) (Message, error) { return resetTmpl.render(to, linkData{link}) }

// AccountExists returns the notice sent instead of a second account;
// link points to the password-reset page.
func AccountExists(to, link string) (Message, error) { return existsTmpl.render(to, linkData{link}) }

// VideoSuccess returns the legacy success email with the video's URL.
func VideoSuccess(to, videoURL string) (Message, error) {
	return videoSuccessTmpl.render(to, linkData{videoURL})
}

// VideoFailure returns the legacy failure email linking to the app.
func VideoFailure(to, appURL string) (Message, error) {
	return videoFailureTmpl.render(to, linkData{appURL})
}
