//! Text renderer: placeholder until the renderer issue lands.
