package main_test

import (
	"context"

	"github.com/toolbus-dev/toolbus/internal/demo"
)

func demoServe(ctx context.Context) (string, func(), error) {
	return demo.Serve(ctx, demo.TransportHTTP, "127.0.0.1:0", demo.Options{})
}
