from datetime import datetime, timezone

from dateutil.relativedelta import relativedelta

now = datetime.now(timezone.utc)
print(f"today: {now:%Y-%m-%d}, same day next month: {now + relativedelta(months=1):%Y-%m-%d}")
