"""Indexes that match the run list, filter, sort and engine queries (docs/schema.md, "Indexes"),
a stored `duration`, and the run statistics per hour and day (`run_period_stats`).

The single-column indexes Django made for `status`, `queued_at`, `idempotency_key` and the
three foreign keys (and PostgreSQL's `_like` copies of the text ones) are dropped by name: the
composite and partial indexes below cover them. Doing it as AlterField would rebuild the whole
table six times on SQLite.
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

COVERED = ("status", "queued_at", "idempotency_key", "pipeline_name", "parent_run_id",
           "scheduled_job_id")


def _single_column_indexes(schema_editor, table, column):
    with schema_editor.connection.cursor() as cursor:
        constraints = schema_editor.connection.introspection.get_constraints(cursor, table)
    return sorted(
        name
        for name, c in constraints.items()
        if c["index"] and not c["unique"] and not c["primary_key"] and c["columns"] == [column]
    )


def drop_covered_indexes(apps, schema_editor):
    quote = schema_editor.quote_name
    for column in COVERED:
        for name in _single_column_indexes(schema_editor, "pipeline_runs", column):
            schema_editor.execute(f"DROP INDEX {quote(name)}")


def restore_single_indexes(apps, schema_editor):
    quote = schema_editor.quote_name
    for column in COVERED:
        if not _single_column_indexes(schema_editor, "pipeline_runs", column):
            schema_editor.execute(
                f"CREATE INDEX {quote(f'pipeline_runs_{column}_idx')} "
                f"ON {quote('pipeline_runs')} ({quote(column)})"
            )


class Migration(migrations.Migration):

    dependencies = [
        ('pipelines_app', '0002_discovery_warnings'),
        ('runs_app', '0002_run_stats'),
    ]

    operations = [
        migrations.AddField(
            model_name='pipelinerun',
            name='duration',
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='pipelinerun',
                    name='idempotency_key',
                    field=models.CharField(blank=True, default='', max_length=255),
                ),
                migrations.AlterField(
                    model_name='pipelinerun',
                    name='parent_run',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='child_runs', to='runs_app.pipelinerun'),
                ),
                migrations.AlterField(
                    model_name='pipelinerun',
                    name='pipeline',
                    field=models.ForeignKey(db_column='pipeline_name', db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='runs', to='pipelines_app.pipeline'),
                ),
                migrations.AlterField(
                    model_name='pipelinerun',
                    name='queued_at',
                    field=models.DateTimeField(default=django.utils.timezone.now),
                ),
                migrations.AlterField(
                    model_name='pipelinerun',
                    name='scheduled_job',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='runs', to='runs_app.scheduledjob'),
                ),
                migrations.AlterField(
                    model_name='pipelinerun',
                    name='status',
                    field=models.CharField(choices=[('PENDING', 'Pending'), ('RUNNING', 'Running'), ('SUCCESS', 'Success'), ('FAILED', 'Failed'), ('CANCELLED', 'Cancelled')], default='PENDING', max_length=16),
                ),
            ],
            database_operations=[
                migrations.RunPython(drop_covered_indexes, restore_single_indexes),
            ],
        ),
        migrations.RemoveIndex(
            model_name='pipelinerun',
            name='run_pipeline_queued_idx',
        ),
        migrations.AddIndex(
            model_name='pipelinerun',
            index=models.Index(fields=['queued_at'], name='run_queued_idx'),
        ),
        migrations.AddIndex(
            model_name='pipelinerun',
            index=models.Index(fields=['pipeline', 'queued_at'], name='run_pipeline_queued_idx'),
        ),
        migrations.AddIndex(
            model_name='pipelinerun',
            index=models.Index(fields=['triggered_by', 'queued_at'], name='run_trigger_queued_idx'),
        ),
        migrations.AddIndex(
            model_name='pipelinerun',
            index=models.Index(fields=['started_at', 'queued_at'], name='run_started_idx'),
        ),
        migrations.AddIndex(
            model_name='pipelinerun',
            index=models.Index(fields=['finished_at', 'queued_at'], name='run_finished_idx'),
        ),
        migrations.AddIndex(
            model_name='pipelinerun',
            index=models.Index(fields=['duration', 'queued_at'], name='run_duration_idx'),
        ),
        migrations.AddIndex(
            model_name='pipelinerun',
            index=models.Index(condition=models.Q(('idempotency_key', ''), _negated=True), fields=['idempotency_key', 'queued_at'], name='run_idempotency_idx'),
        ),
        migrations.AddIndex(
            model_name='pipelinerun',
            index=models.Index(condition=models.Q(('parent_run__isnull', False)), fields=['parent_run', 'queued_at'], name='run_parent_idx'),
        ),
        migrations.AddIndex(
            model_name='pipelinerun',
            index=models.Index(condition=models.Q(('scheduled_job__isnull', False)), fields=['scheduled_job'], name='run_schedule_idx'),
        ),
        migrations.CreateModel(
            name='RunPeriodStats',
            fields=[
                ('id', models.AutoField(primary_key=True, serialize=False)),
                ('granularity', models.CharField(choices=[('hour', 'Hour'), ('day', 'Day')], max_length=8)),
                ('period_start', models.DateTimeField()),
                ('pipeline', models.ForeignKey(db_column='pipeline_name', db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='pipelines_app.pipeline')),
                ('status', models.CharField(choices=[('PENDING', 'Pending'), ('RUNNING', 'Running'), ('SUCCESS', 'Success'), ('FAILED', 'Failed'), ('CANCELLED', 'Cancelled')], max_length=16)),
                ('runs', models.IntegerField(default=0)),
                ('duration_sum', models.FloatField(default=0.0)),
                ('le_1s', models.IntegerField(default=0)),
                ('le_5s', models.IntegerField(default=0)),
                ('le_10s', models.IntegerField(default=0)),
                ('le_30s', models.IntegerField(default=0)),
                ('le_1m', models.IntegerField(default=0)),
                ('le_2m', models.IntegerField(default=0)),
                ('le_5m', models.IntegerField(default=0)),
                ('le_10m', models.IntegerField(default=0)),
                ('le_30m', models.IntegerField(default=0)),
                ('le_1h', models.IntegerField(default=0)),
                ('le_2h', models.IntegerField(default=0)),
                ('le_6h', models.IntegerField(default=0)),
                ('le_1d', models.IntegerField(default=0)),
                ('gt_1d', models.IntegerField(default=0)),
            ],
            options={
                'db_table': 'run_period_stats',
                'ordering': ['granularity', 'period_start', 'pipeline_id', 'status'],
                'indexes': [models.Index(fields=['pipeline', 'granularity', 'period_start'], name='run_period_stats_pipeline_idx')],
                'constraints': [models.UniqueConstraint(fields=('granularity', 'period_start', 'pipeline', 'status'), name='run_period_stats_key')],
            },
        ),
    ]
