package sls

import (
	"context"
	"errors"
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
			if msg == "shutting down and last process failed, just quit" {
				level = slog.LevelDebug // the pull was not checkpointed; it is pulled again next time
			}
		case "err":
			if e, ok := keyvals[i+1].(error); ok && errors.Is(e, errStopping) {
				level = slog.LevelDebug // the library retries Process while it winds down
			}
			attrs = append(attrs, key, keyvals[i+1])
		case "caller", "ts":
		default:
			attrs = append(attrs, key, keyvals[i+1])
		}
	}
	k.log.Log(context.Background(), level, "sls consumer library: "+msg, attrs...)
	return nil
}
