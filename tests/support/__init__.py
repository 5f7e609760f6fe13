"""Test harness: real validators (Khronos glTF validator via node) and a real client (CesiumJS in headless
Chromium) for the suite, plus the small local HTTP server they use. See docs/testing.md."""
