package sls

import (
	"context"
	"fmt"
	"log/slog"
)

// kitLogger hands the consumer library's go-kit log lines to slog. Its
// chatty info lines go to debug.
type kitLogger struct{ log *slog.Logger }

func (k kitLogger) Log(keyvals ...any) error {
	level := slog.LevelDebug
	msg := ""
	attrs := make([]any, 0, len(keyvals))
	for i := 0; i+1 < len(keyvals); i += 2 {
		key := fmt.Sprint(keyvals[i])
		switch key {
		case "level":
			switch fmt.Sprint(keyvals[i+1]) {
			case "warn":
				level = slog.LevelWarn
			case "error":
				level = slog.LevelError
			}
		case "msg":
			msg = fmt.Sprint(keyvals[i+1])
		case "caller", "ts":
		default:
			attrs = append(attrs, key, keyvals[i+1])
		}
	}
	k.log.Log(context.Background(), level, "sls consumer library: "+msg, attrs...)
	return nil
}
