// Package migrations holds the one numbered goose sequence of SQL files for the
// NounsAI database, embedded into the binary.
//
// Every *.sql file in this directory is part of the sequence; a new
// NNNNN_name.sql file is picked up without any code change. Files must use
// `-- +goose Up` / `-- +goose Down` sections. This package never opens a
// database; shared/migrate applies the files.
package migrations

import "embed"

// FS holds every *.sql migration file, at the root of the file system.
//
//go:embed *.sql
var FS embed.FS
