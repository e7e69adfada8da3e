package account

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/email"
)

// MailQueue is the River queue of account emails.
const MailQueue = "email"

// MailKind names one of the emails the account service sends.
type MailKind string

// The account emails.
const (
	// MailVerification links to APP_BASE_URL/verify/<key>.
	MailVerification MailKind = "verification"
	// MailReset links to APP_BASE_URL/reset/<key>.
	MailReset MailKind = "reset"
	// MailAccountExists tells the owner of an address that someone tried to
	// sign up with it again.
	MailAccountExists MailKind = "account_exists"
)

// MailArgs is the River job that sends one account email. It is inserted
// in the transaction that creates the key (a transactional outbox), so an
// email is queued exactly when its key exists; River retries a failed send.
// It carries the recipient and the key's nonce, never the key itself.
type MailArgs struct {
	Email MailKind `json:"email"`
	To    string   `json:"to"`
	Nonce string   `json:"nonce,omitempty"`
}

// Kind implements river.JobArgs.
func (MailArgs) Kind() string { return "account_email" }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (MailArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: MailQueue, MaxAttempts: 15}
}

// MailConfig configures the email worker.
type MailConfig struct {
	// BaseURL is the frontend base of links (APP_BASE_URL), no trailing
	// slash.
	BaseURL string
	// VerifyTTL and ResetTTL are the key lifetimes: a job still failing
	// after its key expired is cancelled.
	VerifyTTL, ResetTTL time.Duration
	// Workers is the number of concurrent sends (default 4).
	Workers int
	// RetryBase is the first retry delay, doubled per attempt up to 10
	// minutes (default 5s).
	RetryBase time.Duration
}

// mailWorker sends the account emails.
type mailWorker struct {
	river.WorkerDefaults[MailArgs]
	sender email.Sender
	keys   *KeyDeriver
	cfg    MailConfig
	log    *zap.Logger
}

// Work renders and sends the email of one job.
func (w *mailWorker) Work(ctx context.Context, job *river.Job[MailArgs]) error {
	a := job.Args
	var (
		msg email.Message
		err error
	)
	switch a.Email {
	case MailVerification:
		if time.Since(job.CreatedAt) > w.cfg.VerifyTTL {
			return river.JobCancel(errors.New("verification key expired before delivery"))
		}
		msg, err = email.Verification(a.To, w.cfg.BaseURL+"/verify/"+w.keys.derive(purposeVerify, a.Nonce))
	case MailReset:
		if time.Since(job.CreatedAt) > w.cfg.ResetTTL {
			return river.JobCancel(errors.New("reset key expired before delivery"))
		}
		msg, err = email.PasswordReset(a.To, w.cfg.BaseURL+"/reset/"+w.keys.derive(purposeReset, a.Nonce))
	case MailAccountExists:
		msg, err = email.AccountExists(a.To, w.cfg.BaseURL+"/")
	default:
		return river.JobCancel(fmt.Errorf("unknown account email %q", a.Email))
	}
	if err != nil {
		return river.JobCancel(fmt.Errorf("render %s email: %w", a.Email, err))
	}
	if err := w.sender.Send(ctx, msg); err != nil {
		w.log.Warn("email send failed", zap.String("email", string(a.Email)), zap.Int64("job_id", job.ID),
			zap.Int("attempt", job.Attempt), zap.Error(err))
		return fmt.Errorf("send %s email: %w", a.Email, err)
	}
	w.log.Info("email sent", zap.String("email", string(a.Email)), zap.Int64("job_id", job.ID), zap.Int("attempt", job.Attempt))
	return nil
}

// NextRetry retries quickly at first (5 s, 10 s, 20 s, ... with the default
// RetryBase) and then every
// 10 minutes: a verification email that arrives an hour late is a lost
// user.
func (w *mailWorker) NextRetry(job *river.Job[MailArgs]) time.Time {
	d := w.cfg.RetryBase << min(job.Attempt-1, 10)
	return time.Now().Add(min(d, 10*time.Minute))
}

// Timeout bounds one send.
func (w *mailWorker) Timeout(*river.Job[MailArgs]) time.Duration { return 30 * time.Second }

// Mailer queues account emails and works the queue. It owns a River client
// that works only MailQueue. Safe for concurrent use.
type Mailer struct {
	client *river.Client[pgx.Tx]
}

// NewMailer returns a mailer sending through sender. Start must be called
// for queued emails to go out.
func NewMailer(pool *pgxpool.Pool, sender email.Sender, keys *KeyDeriver, cfg MailConfig, log *zap.Logger) (*Mailer, error) {
	log = log.Named("mail")
	cfg.Workers = config.OrDefault(cfg.Workers, 4)
	cfg.RetryBase = config.OrDefault(cfg.RetryBase, 5*time.Second)
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &mailWorker{sender: sender, keys: keys, cfg: cfg, log: log}); err != nil {
		return nil, fmt.Errorf("register email worker: %w", err)
	}
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Queues:  map[string]river.QueueConfig{MailQueue: {MaxWorkers: cfg.Workers}},
		Workers: workers,
		// Jobs hold addresses; keep finished ones briefly.
		CompletedJobRetentionPeriod: time.Hour,
		Logger:                      slog.New(slog.NewTextHandler(zap.NewStdLog(log.Named("river")).Writer(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return nil, fmt.Errorf("create email queue client: %w", err)
	}
	return &Mailer{client: client}, nil
}

// Start starts working the queue in the background until Stop.
func (m *Mailer) Start(ctx context.Context) error {
	if err := m.client.Start(ctx); err != nil {
		return fmt.Errorf("start email queue: %w", err)
	}
	return nil
}

// Stop waits for sends in progress (bounded by ctx) and stops.
func (m *Mailer) Stop(ctx context.Context) error {
	if err := m.client.Stop(ctx); err != nil {
		return fmt.Errorf("stop email queue: %w", err)
	}
	return nil
}

// enqueue inserts an email job in tx.
func (m *Mailer) enqueue(ctx context.Context, tx pgx.Tx, args MailArgs) error {
	if _, err := m.client.InsertTx(ctx, tx, args, nil); err != nil {
		return fmt.Errorf("queue %s email: %w", args.Email, err)
	}
	return nil
}
