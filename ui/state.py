"""What the panel's sections share besides the saved settings: the editor, the engine, its methods,
the faces found. Sections read it and follow its signals; none of them talks to another."""
from __future__ import annotations

from ui.calls import Calls
from protocol.host import Host
from ui.qt import QObject, Signal
from ui.request import RequestState
from ui.settings import Settings

Face = tuple[int, int, int, int, float]  # x, y, w, h, score


class PanelState(QObject):
    models_changed = Signal()   # the engine listed its methods (or the list was cleared)
    faces_changed = Signal()    # faces found, or which of them are used
    running_changed = Signal()  # a run started or ended
    layer_changed = Signal()    # the host's revision changed: other pixels, layer or selection
    message = Signal(str, bool)  # a line for the status bar; True when it is an error

    def __init__(self, host: Host, client, settings: Settings, parent: QObject | None = None):
        super().__init__(parent)
        self.host = host
        self.client = client
        self.settings = settings
        self.calls = Calls(self)
        self.models: list[dict] = []
        self.device_name = ""
        self.face_restorer = ""  # the engine's face restorer weights status ("": not said)
        self.faces: list[Face] = []
        self.faces_used: list[bool] = []
        self.running = False

    def current_model(self) -> dict | None:
        return next((m for m in self.models if m["id"] == self.settings.model), None)

    def model_title(self) -> str:
        model = self.current_model()
        return (model.get("title") or model["id"]) if model else self.settings.model

    def adaptation(self) -> set[str]:
        return set((self.current_model() or {}).get("adaptation", []))

    def set_client(self, client) -> None:
        self.client = client
        self.set_models([], {})

    def set_models(self, models: list[dict], health: dict) -> None:
        """The engine's methods and what its `health()` says about the device and the face restorer."""
        self.models = models
        self.device_name = str(health.get("device", ""))
        self.face_restorer = str(health.get("face_restorer", ""))
        self.models_changed.emit()

    def set_faces(self, faces: list[Face]) -> None:
        self.faces, self.faces_used = faces, [True] * len(faces)
        self.faces_changed.emit()

    def use_face(self, index: int, used: bool) -> None:
        self.faces_used[index] = used
        self.faces_changed.emit()

    def set_running(self, running: bool) -> None:
        self.running = running
        self.running_changed.emit()

    def show_status(self, text: str) -> None:
        self.message.emit(text, False)

    def show_error(self, text: str) -> None:
        self.message.emit(text, True)

    def request_state(self) -> RequestState:
        """The state a request is built from (reads the host: call on the GUI thread)."""
        s = self.settings
        return RequestState(
            model=self.current_model() or {"id": s.model}, layer_size=self.host.layer_size(),
            scale=s.scale, device=s.device, tile=s.tile, ensemble=s.ensemble,
            config=s.configs.get(s.model), dials=dict(s.dials), selection=self.host.selection(),
            selection_use=s.selection_use, auto_faces=s.auto_faces,
            faces=tuple(face[:4] for face in self.faces), faces_used=tuple(self.faces_used),
            restore_faces=s.restore_faces, face_restorer=self.face_restorer)
