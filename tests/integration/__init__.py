"""Tests against real servers (markers `kafka`, `rabbitmq`, `influx`) and end-to-end runs of
the installed command in processes of its own."""
