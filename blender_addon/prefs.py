"""Add-on preferences: server address, TLS, token (or its environment variable), timeouts."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, FloatProperty, StringProperty

from .settings import DEFAULT_ADDRESS, DEFAULT_TOKEN_ENV, ServerSettings, resolve_token

# ``__package__`` is "blender_addon" from a checkout and "bl_ext.<repo>.o2a_render" as an extension.
ADDON_ID = __package__


class O2A_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    server_address: StringProperty(
        name="Server", default=DEFAULT_ADDRESS,
        description="Render server address as host:port (IPv6 as [addr]:port; dns:/// names work too)",
    )
    use_tls: BoolProperty(name="TLS", default=False, description="Encrypt the connection (grpcs)")
    tls_ca_file: StringProperty(
        name="CA certificate", subtype="FILE_PATH", default="",
        description="PEM file of a private certificate authority; empty = the system's roots",
    )
    token: StringProperty(
        name="Token", subtype="PASSWORD", default="",
        description="Bearer token for the server; stored in the user preferences, never in .blend files",
    )
    token_env_var: StringProperty(
        name="Token variable", default=DEFAULT_TOKEN_ENV,
        description="Environment variable read for the token when the field above is empty",
    )
    connect_timeout_s: FloatProperty(
        name="Connect timeout", default=10.0, min=0.5, max=600.0, unit="TIME_ABSOLUTE",
        description="Seconds to wait for the server to answer before reporting it unreachable",
    )
    rpc_timeout_s: FloatProperty(
        name="Call timeout", default=60.0, min=1.0, max=3600.0, unit="TIME_ABSOLUTE",
        description="Deadline of single calls and uploads (progress streams have none)",
    )
    ignore_online_access: BoolProperty(
        name="Allow with online access off", default=False,
        description="Contact the server even when Blender's 'Allow Online Access' is off "
                    "(for a render server on this machine or the studio network)",
    )

    def draw(self, context):
        layout = self.layout
        col = layout.column()
        col.prop(self, "server_address")
        row = col.row(align=True)
        row.prop(self, "use_tls")
        sub = row.row()
        sub.active = self.use_tls
        sub.prop(self, "tls_ca_file", text="")
        col.prop(self, "token")
        col.prop(self, "token_env_var")
        row = col.row(align=True)
        row.prop(self, "connect_timeout_s")
        row.prop(self, "rpc_timeout_s")
        col.prop(self, "ignore_online_access")
        if not bpy.app.online_access and not self.ignore_online_access:
            col.label(text="Online access is off in Blender's preferences: server calls are blocked", icon="ERROR")
        col.operator("o2a.test_connection", icon="LINKED")
        caps = context.window_manager.o2a_runtime.capabilities
        if caps:
            box = col.box()
            for line in caps.splitlines():
                box.label(text=line)


def get_prefs(context=None) -> O2A_AddonPreferences:
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    if addon is None:
        raise RuntimeError(f"add-on {ADDON_ID!r} is not enabled")
    prefs = addon.preferences
    assert isinstance(prefs, O2A_AddonPreferences)
    return prefs


def server_settings(context=None, address_override: str = "") -> ServerSettings:
    """Plain settings for the job runner, token resolved from prefs or environment."""
    try:
        p = get_prefs(context)
    except RuntimeError:
        # Package imported but not enabled as an add-on (farm scripts): defaults + environment.
        return ServerSettings(address=address_override or DEFAULT_ADDRESS, token=resolve_token(""))
    return ServerSettings(
        address=address_override or p.server_address,
        use_tls=p.use_tls,
        ca_file=bpy.path.abspath(p.tls_ca_file) if p.tls_ca_file else "",
        token=resolve_token(p.token, p.token_env_var),
        connect_timeout_s=p.connect_timeout_s,
        rpc_timeout_s=p.rpc_timeout_s,
    )


def network_allowed(context=None) -> tuple[bool, str]:
    """Blender's online-access switch, unless the user allowed the studio server explicitly."""
    if bpy.app.online_access:
        return True, ""
    try:
        if get_prefs(context).ignore_online_access:
            return True, ""
    except RuntimeError:
        pass
    return False, ("Online access is disabled (Preferences > System > Network). Enable it, start Blender with "
                   "--online-mode, or tick 'Allow with online access off' in the add-on preferences")


classes = (O2A_AddonPreferences,)
register, unregister = bpy.utils.register_classes_factory(classes)
