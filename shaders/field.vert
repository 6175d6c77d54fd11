#version 330 core
// Fullscreen pass without vertex buffers: 4 vertices of a triangle strip covering the viewport.
// uv: (0,0) at the viewport's bottom-left, (1,1) at its top-right.
out vec2 uv;

void main() {
    vec2 corner = vec2(float(gl_VertexID & 1), float((gl_VertexID >> 1) & 1));
    uv = corner;
    gl_Position = vec4(corner * 2.0 - 1.0, 0.0, 1.0);
}
