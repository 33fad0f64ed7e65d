//go:build !faultinject

package server

import "net/http"

func debugHandler(*Server) http.Handler { return nil }

func debugUnsafeReads() bool { return false }
