"""Field maps: a network server's decoded `object` -> canonical readings, per device profile.

ChirpStack runs the vendor's JavaScript codec and publishes its output as `object`; the keys and
units are the vendor's. A field map names, per key, the canonical quantity and a scale to SI.
Keys a map does not name are counted and listed (never silently dropped), and a key a map names
but that is not a number becomes a missing value with its reason.

The maps below cover the seven device profiles of the shared ChirpStack archive; notes say why a
key is left out (for example RBS301 temperature sensors report humidity 0: they have no RH probe).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from greennanny.decoders.base import Decoded, Reading
from greennanny.decoders.values import coerce_value


@dataclass(frozen=True, slots=True)
class FieldSpec:
    quantity: str
    scale: float = 1.0


FIELD_MAPS: dict[str, dict[str, FieldSpec]] = {
    # Multitech RBS301 temperature: integer degC; `humidity` is always 0 (no RH probe): unmapped.
    "rbs301-temp": {"temperature": FieldSpec("air_temperature"), "batteryLevel": FieldSpec("battery")},
    # Multitech RBS305 air temperature/humidity.
    "rbs305-ath": {"temperature": FieldSpec("air_temperature"), "humidity": FieldSpec("relative_humidity")},
    # Multitech RBS301 door/window contact.
    "rbs301-dws": {"open": FieldSpec("door_open"), "batteryLevel": FieldSpec("battery")},
    # Milesight EM500-UDL ultrasonic distance (mm), battery %.
    "em500-udl": {"distance": FieldSpec("distance"), "battery": FieldSpec("battery")},
    # Dragino DDS75-LB ultrasonic distance (mm), battery volts.
    "dragino-dds75-lb": {"distance": FieldSpec("distance"), "Bat": FieldSpec("battery_voltage")},
    # Makerfabs LoRaWAN soil moisture: raw ADC count, air temp/humidity from its AHT sensor.
    "makerfabs-soil": {
        "soil_val": FieldSpec("soil_adc"),
        "temp": FieldSpec("air_temperature"),
        "hum": FieldSpec("relative_humidity"),
        "battery_v": FieldSpec("battery_voltage"),
    },
    # Dragino SW3L flow meter: only status uplinks (battery volts) in the archive.
    "dragino-sw3l": {"BAT": FieldSpec("battery_voltage")},
    # Any decoder that names its outputs temperature/humidity/co2 (degC, %RH, ppm), e.g. field fault BR-02.
    "generic-th-co2": {"temperature": FieldSpec("air_temperature"), "humidity": FieldSpec("relative_humidity"),
                       "co2": FieldSpec("co2")},
    # Dragino LHT65: SHT20 air temperature/humidity; TempC_DS is the optional external DS18B20 probe
    # (in greenhouses usually in the substrate). 327.67 there means "no probe" (a sentinel).
    "dragino-lht65": {"BatV": FieldSpec("battery_voltage"), "Hum_SHT": FieldSpec("relative_humidity"),
                      "TempC_SHT": FieldSpec("air_temperature"), "TempC_DS": FieldSpec("soil_temperature")},
    # Dragino LSE01 soil moisture/EC/temperature (EC in uS/cm).
    "dragino-lse01": {"Bat": FieldSpec("battery_voltage"), "temp_SOIL": FieldSpec("soil_temperature"),
                      "water_SOIL": FieldSpec("soil_moisture"), "conduct_SOIL": FieldSpec("soil_ec")},
}

# ChirpStack device-profile names seen in the field -> field map name.
PROFILE_FIELD_MAPS: dict[str, str] = {
    "Multitech RBS301 Temp Sensor": "rbs301-temp",
    "rbs305-ath": "rbs305-ath",
    "rbs301-dws": "rbs301-dws",
    "EM500-UDL": "em500-udl",
    "Dragino DDS75-LB Ultrasonic Distance Sensor": "dragino-dds75-lb",
    "Makerfabs Soil Moisture Sensor": "makerfabs-soil",
    "SW3L": "dragino-sw3l",
}


def apply_field_map(obj: Mapping[str, Any], field_map: Mapping[str, FieldSpec]) -> Decoded:
    """Readings for the keys the map names; every other key is listed in `unmapped`."""
    out = Decoded(object=dict(obj))
    for key, raw in obj.items():
        spec = field_map.get(key)
        if spec is None:
            out.unmapped.append(key)
            continue
        value, quality, reason = coerce_value(key, raw, spec.quantity, spec.scale)
        out.readings.append(Reading(spec.quantity, value, None, quality, reason))
    return out
