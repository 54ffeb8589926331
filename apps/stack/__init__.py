"""The embedded local stack: PostgreSQL, a Kafka-protocol broker, Airflow, the worker, the simulator."""
