"""Property groups that FaceForge stores on Blender data-blocks.

``Scene.faceforge`` holds the generation settings (saved with the file), ``Object.faceforge`` marks
the faces FaceForge made and their codes, ``WindowManager.faceforge`` the transient state of the
job in progress (not saved).
"""

import json

import bpy
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatProperty,
    FloatVectorProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)
from bpy.types import PropertyGroup

# Blender 4.5+ warns when a path property that does not declare support for blend-relative paths
# ("//...") is given one; older versions have no such option and accept them anyway.
_BLEND_RELATIVE_PATH = (
    {"PATH_SUPPORTS_BLEND_RELATIVE"}
    if "is_path_supports_blend_relative" in bpy.types.Property.bl_rna.properties
    else set()
)

# How many leading latent identity dimensions the Generate panel exposes as sliders.
IDENTITY_SLIDERS = 8

AGE_GROUP_ITEMS = (
    ("infant", "Infant", "Under 3 years"),
    ("child", "Child", "3 to 12 years"),
    ("teen", "Teen", "12 to 18 years"),
    ("adult", "Adult", "18 to 60 years"),
    ("elder", "Elder", "60 years and older"),
)


class FaceForgeSceneSettings(PropertyGroup):
    """Per-scene FaceForge settings, available as ``scene.faceforge``."""

    seed: IntProperty(
        name="Seed",
        description="Random seed: the same seed and settings give the same result",
        default=0,
        min=0,
    )
    model_path: StringProperty(
        name="Model",
        description="FaceForge model file used by this scene (empty: the add-on preferences' default)",
        subtype="FILE_PATH",
        default="",
        options=_BLEND_RELATIVE_PATH,
    )
    radius: FloatProperty(
        name="Typicality",
        description=(
            "Confidence level of the identity draw (Eq. 24 of BabyFlow): low values give average "
            "faces, high values distinctive ones; 0 draws freely"
        ),
        default=0.0,
        min=0.0,
        max=0.999,
    )
    use_sliders: BoolProperty(
        name="Use Sliders",
        description="Set the first identity dimensions from the sliders instead of the seed",
        default=False,
    )
    identity_sliders: FloatVectorProperty(
        name="Identity",
        description="Leading dimensions of the identity flow's latent space (0 is the most typical value)",
        size=IDENTITY_SLIDERS,
        default=(0.0,) * IDENTITY_SLIDERS,
        soft_min=-3.0,
        soft_max=3.0,
    )
    expression_seed: IntProperty(
        name="Expression Seed",
        description="Seed of Random Expression",
        default=0,
        min=0,
    )
    existing_keys: EnumProperty(
        name="Existing Keys",
        description=(
            "Apply to Selected: what happens to a shape key of the mesh's own that has an expression's name"
        ),
        items=(
            ("KEEP", "Keep", "Keep the mesh's own key and skip that expression"),
            ("REPLACE", "Replace", "Overwrite the mesh's own key with the fitted expression"),
            ("SUFFIX", "Suffix", "Keep the mesh's own key and add the fitted expression as name_FF"),
        ),
        default="KEEP",
    )
    character_profile: EnumProperty(
        name="Key Names",
        description="Add FaceForge Expressions to Character: the names the character's keys get",
        items=(
            ("ARKIT", "ARKit", "Apple's 52 names (jawOpen, eyeBlinkLeft...)"),
            ("VRM", "VRM Perfect Sync", "The ARKit names capitalised (JawOpen, EyeBlinkLeft...)"),
            ("CC4", "Character Creator 4", "Character Creator / iClone names (Jaw_Open, Eye_Blink_L...)"),
            ("FACECAP", "Face Cap", "ARKit names with _L/_R sides (eyeBlink_L...)"),
        ),
        default="ARKIT",
    )
    character_existing_keys: EnumProperty(
        name="Existing Keys",
        description="Add FaceForge Expressions to Character: a key of the character's own with the same name",
        items=(
            ("KEEP", "Keep", "Keep the character's key and skip FaceForge's"),
            ("REPLACE", "Replace", "Overwrite the character's key with FaceForge's"),
            ("SUFFIX", "Suffix", "Keep the character's key and add FaceForge's as name_FF"),
        ),
        default="KEEP",
    )
    exact_expression: BoolProperty(
        name="Exact Key",
        description=(
            "Write the sampled expression as an exact 'Sampled' shape key instead of setting the "
            "ARKit key values that best reproduce it"
        ),
        default=False,
    )
    interpolation_steps: IntProperty(
        name="In-betweens",
        description="Faces strictly between the two faces",
        default=3,
        min=1,
        max=32,
    )
    interpolation_mode: EnumProperty(
        name="Result",
        items=(
            ("OBJECTS", "Objects", "New face objects between the two faces"),
            ("KEYED", "Keyed Blend", "Shape keys on the active face, keyed to morph into the other"),
        ),
        default="OBJECTS",
    )
    target_age: EnumProperty(
        name="Target Age",
        description="Age group whose typical face shows the active face's expression",
        items=AGE_GROUP_ITEMS,
        default="infant",
    )
    transfer_intensity: FloatProperty(
        name="Intensity",
        description="Expression intensity on the target (delta of BabyFlow's Eq. 7)",
        default=1.0,
        min=0.0,
        max=3.0,
    )


COMA_LABEL_ITEMS = tuple(
    (name, name.replace("_", " ").title(), f"The CoMA '{name}' motion")
    for name in (
        "bareteeth", "cheeks_in", "eyebrow", "high_smile", "lips_back", "lips_up",
        "mouth_down", "mouth_extreme", "mouth_middle", "mouth_open", "mouth_side", "mouth_up",
    )
)  # fmt: skip


class FaceForgeAnimateSettings(PropertyGroup):
    """Settings of the Animate panel, available as ``scene.faceforge_animate``."""

    model_path: StringProperty(
        name="Motion Model",
        description="FaceForge motion model file (empty: the one `faceforge animate build` caches)",
        subtype="FILE_PATH",
        default="",
        options=_BLEND_RELATIVE_PATH,
    )
    label: EnumProperty(name="Motion", description="Expression label of the motion", items=COMA_LABEL_ITEMS)
    seed: IntProperty(name="Seed", description="Seed of the generated motion", default=0, min=0)
    start_frame: IntProperty(name="Start", description="First frame of the take", default=1)
    seconds: FloatProperty(
        name="Length", description="Neutral to apex, in seconds at the scene's frame rate", default=1.0,
        min=0.05, max=60.0, unit="TIME_ABSOLUTE",
    )  # fmt: skip
    intensity: FloatProperty(
        name="Intensity", description="Scale of the motion", default=1.0, min=0.0, max=2.0
    )
    hold_seconds: FloatProperty(
        name="Hold", description="Hold the apex this long", default=0.5, min=0.0, max=60.0,
        unit="TIME_ABSOLUTE",
    )  # fmt: skip
    release: BoolProperty(name="Release", description="Return to neutral after the hold", default=True)
    release_seconds: FloatProperty(
        name="Release Length", description="Apex back to neutral", default=0.75, min=0.05, max=60.0,
        unit="TIME_ABSOLUTE",
    )  # fmt: skip
    exact: BoolProperty(
        name="Exact",
        description=(
            "Also store what the shape keys cannot express, as a point cache (.pc2) played by a Mesh Cache "
            "modifier on top of the keys"
        ),
        default=False,
    )
    dense_keys: BoolProperty(
        name="Dense Keys",
        description=(
            "Key every shape key on every frame instead of the fewest Bezier keys that reproduce the "
            "take within 0.5% (exact takes are always dense)"
        ),
        default=False,
    )
    other_label: EnumProperty(name="Other Motion", items=COMA_LABEL_ITEMS, default="mouth_open")
    other_seed: IntProperty(name="Other Seed", default=1, min=0)
    blend: FloatProperty(
        name="Blend", description="Position on the geodesic from this motion (0) to the other (1)",
        default=0.5, min=0.0, max=1.0, subtype="FACTOR",
    )  # fmt: skip


RESOLUTION_ITEMS = (
    ("6.8", "6.8 mm", "Coarsest lattice of the paper's study (fast preview)"),
    ("4.5", "4.5 mm", "Coarse lattice"),
    ("3.0", "3.0 mm", "Medium lattice"),
    ("2.0", "2.0 mm", "The paper's default resolution"),
    ("1.3", "1.3 mm", "Finest lattice (slow, memory hungry)"),
)


DEVICE_ITEMS = (
    ("auto", "Auto", "A CUDA GPU when the backend sees one, else the CPU"),
    ("cpu", "CPU", "Solve on the CPU"),
    ("cuda", "GPU (CUDA)", "Solve on the CUDA GPU (fails if the backend has none)"),
)


class FaceForgePhysicsSettings(PropertyGroup):
    """Settings of the Physics panel, available as ``scene.faceforge_physics``."""

    frame_start: IntProperty(name="Start", description="First frame to simulate", default=1)
    frame_end: IntProperty(name="End", description="Last frame to simulate", default=24)
    resolution: EnumProperty(
        name="Resolution", description="Spacing of the hexahedral lattice over the soft tissue",
        items=RESOLUTION_ITEMS, default="4.5",
    )  # fmt: skip
    contact: BoolProperty(
        name="Lip Contact", description="Keep lips from passing through each other and the teeth (IPC)",
        default=True,
    )  # fmt: skip
    gravity: BoolProperty(name="Gravity", description="Let gravity pull the soft tissue", default=False)
    gravity_direction: FloatVectorProperty(
        name="Direction", description="Direction of gravity in world space (9.81 m/s^2 along it)",
        default=(0.0, 0.0, -1.0), size=3, subtype="DIRECTION",
    )  # fmt: skip
    paralysis_group: StringProperty(
        name="Paralysis", description="Vertex group whose weights (0-1) remove the muscles' actuation",
        default="",
    )  # fmt: skip
    jaw_scale: FloatProperty(
        name="Jaw Scale", description="Scale the jaw bone (bone reshaping); 1 keeps the anatomy",
        default=1.0, min=0.5, max=1.5,
    )  # fmt: skip
    device: EnumProperty(
        name="Device", description="Where the backend runs the solves", items=DEVICE_ITEMS, default="auto"
    )


class FaceForgeObjectSettings(PropertyGroup):
    """What FaceForge knows about an object it made or rigged, available as ``object.faceforge``."""

    is_face: BoolProperty(name="FaceForge Face", default=False, options={"HIDDEN"})
    kind: StringProperty(name="Kind", default="", options={"HIDDEN"})  # "generated", "scan", "preview"
    z_id_json: StringProperty(name="Latent Identity", default="", options={"HIDDEN"})
    #: The shape key holding each of the model's expressions in ``model_names_json`` ("" where the
    #: object has none: the user kept a key of their own with that name).
    key_names_json: StringProperty(name="Shape Keys", default="", options={"HIDDEN"})
    #: The model's expression names, in the model's order; empty in older files: the key names.
    model_names_json: StringProperty(name="Expressions", default="", options={"HIDDEN"})
    topology_hash: StringProperty(name="Topology", default="", options={"HIDDEN"})
    source: StringProperty(name="Source", default="", options={"HIDDEN"})  # e.g. the pair of an in-between

    @property
    def z_id(self) -> list[float]:
        return json.loads(self.z_id_json) if self.z_id_json else []

    def _lists(self) -> tuple[list[str], list[str]]:
        blocks = json.loads(self.key_names_json) if self.key_names_json else []
        names = json.loads(self.model_names_json) if self.model_names_json else blocks
        return (names, blocks) if len(names) == len(blocks) else (blocks, blocks)

    @property
    def key_names(self) -> list[str]:
        """The shape keys FaceForge wrote (block names, e.g. ``jawOpen_FF``), in the model's order."""
        return [b for b in self._lists()[1] if b]

    @property
    def model_names(self) -> list[str]:
        """The model's expression names (all of them, with or without a key on this object)."""
        return self._lists()[0]

    @property
    def key_map(self) -> dict[str, str]:
        """The model's expression name -> the shape key that holds it (expressions without one left out)."""
        names, blocks = self._lists()
        return {n: b for n, b in zip(names, blocks, strict=True) if b}


class FaceForgeJobState(PropertyGroup):
    """The job in progress (transient: on the window manager, never saved)."""

    running: BoolProperty(default=False)
    label: StringProperty(default="")
    progress: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    message: StringProperty(default="")


classes = (
    FaceForgeSceneSettings,
    FaceForgeAnimateSettings,
    FaceForgePhysicsSettings,
    FaceForgeObjectSettings,
    FaceForgeJobState,
)


def attach():
    """Add the ``faceforge`` pointer properties to their ID types (after the classes are registered)."""
    bpy.types.Scene.faceforge = PointerProperty(type=FaceForgeSceneSettings)
    bpy.types.Scene.faceforge_animate = PointerProperty(type=FaceForgeAnimateSettings)
    bpy.types.Scene.faceforge_physics = PointerProperty(type=FaceForgePhysicsSettings)
    bpy.types.Object.faceforge = PointerProperty(type=FaceForgeObjectSettings)
    bpy.types.WindowManager.faceforge = PointerProperty(type=FaceForgeJobState)


def detach():
    """Remove the pointer properties added by :func:`attach` (before the classes are unregistered)."""
    for name in ("faceforge_animate", "faceforge_physics"):
        if hasattr(bpy.types.Scene, name):
            delattr(bpy.types.Scene, name)
    for owner in (bpy.types.Scene, bpy.types.Object, bpy.types.WindowManager):
        if hasattr(owner, "faceforge"):
            del owner.faceforge
