// Package browser tests the web dashboard (internal/webui) in a real
// browser: chromedp drives a headless chromium against an in-process 3-node
// cluster. It runs with CAIRN_BROWSER_TEST=1 (make browser) and skips
// otherwise, and when no chromium binary is found; see docs/TESTING.md.
package browser
