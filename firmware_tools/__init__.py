"""Microcontroller side: TFLite Micro artifacts, firmware sources, the serial protocol and a board emulator."""
