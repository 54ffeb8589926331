-- Run once by the postgres image on first start: Airflow and Metabase keep their own metadata databases.
CREATE DATABASE airflow OWNER triage;
CREATE DATABASE metabase OWNER triage;
