import os

mode = os.environ.get("MODE", "default")
print(f"full_config running in {mode!r} mode (run config: {os.environ.get('REPORT_SCOPE', 'all')})")
