"""The sweep report: collect (cells.csv), tables, claims, figures, and build (report.md)."""
