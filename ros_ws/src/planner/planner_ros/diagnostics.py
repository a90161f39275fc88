"""Publishing a node's status on ``/diagnostics``: one ``DiagnosticStatus`` named after the
node, its values as strings (lists and mappings as JSON, so a monitor can parse them)."""

from __future__ import annotations

import json

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


def format_value(value: object) -> str:
    """A diagnostics value as text: JSON for lists, tuples and mappings, else ``str``."""
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    return str(value)


class Reporter:
    """The ``/diagnostics`` publisher of one node."""

    def __init__(self, node: Node, topic: str, hardware_id: str = "franka") -> None:
        self._node = node
        self._hardware_id = hardware_id
        self.publisher = node.create_publisher(DiagnosticArray, topic, 10)

    def publish(self, level: bytes, message: str, values: dict[str, object]) -> None:
        """One status: ``level`` (OK/WARN/ERROR), a one-line ``message`` and ``values``."""
        status = DiagnosticStatus(
            level=level,
            name=self._node.get_fully_qualified_name(),
            message=message,
            hardware_id=self._hardware_id,
            values=[KeyValue(key=k, value=format_value(v)) for k, v in values.items()],
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self._node.get_clock().now().to_msg()
        self.publisher.publish(msg)
