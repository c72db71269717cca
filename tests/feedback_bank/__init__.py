"""Wrong answers written for measuring feedback quality (issue 18): one module per lesson, each with BANK."""
