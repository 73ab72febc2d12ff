//! PIXEL model: placeholder until the model issue lands.
