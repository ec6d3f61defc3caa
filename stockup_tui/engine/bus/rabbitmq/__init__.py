"""RabbitMQ as the bus (pika), one module per client role.

`bus.py` is the face the pipeline sees (`RabbitMQBus`) and declares the topology;
`publisher.py` publishes with confirms and resends what was unconfirmed after a reconnect;
`consumer.py` consumes with manual acks; `checkpoint.py` keeps a stream's recovery point in a
file; `amqp.py` holds the connections that reconnect by themselves.
"""
