from datetime import datetime, timezone

print(f"scheduled tick at {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
