"""What devices push, MQTT or HTTP -> records: the doors apart from the formats.

* Doors, how a message arrives: mqtt_door.py (a subscription on the bridge's
  own broker), http_door.py (devices POSTing). Both hand the bytes to
* parser.py, which reads them as JSON (json_text.py, lenient) and gives the
  object to the first format in formats.FORMATS that accepts it.
* Formats, what a message means (format.py says what one is):
  milesight.py (Milesight AI sensors' reports, and any other JSON object as an
  event), lorawan.py (uplinks through a LoRaWAN network server).
* What formats share: device_time.py (a message's times in UTC), sender.py
  (which sensor sent it; when a timeless message was first seen).

appliance/committer.py then stores what the parser made, and only then is the
message acknowledged.
"""
